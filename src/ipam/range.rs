//! Address ranges and range sets, and the round-robin walk over a range set (§2.4).
//!
//! Arithmetic is done on `u128` for both families, so nothing overflows: an IPv4
//! address is its `u32` value widened, and the walk never steps past a range's end.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;

/// The address as a number (IPv4 widened to `u128`).
pub(crate) fn to_num(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The inverse of [`to_num`]; for IPv4 only the low 32 bits are used.
pub(crate) fn from_num(v4: bool, n: u128) -> IpAddr {
    if v4 { IpAddr::V4(Ipv4Addr::from((n & u128::from(u32::MAX)) as u32)) } else { IpAddr::V6(Ipv6Addr::from(n)) }
}

/// Number of address bits of the family.
pub(crate) fn family_bits(v4: bool) -> u8 {
    if v4 { 32 } else { 128 }
}

/// The host part mask of a prefix: all ones below the prefix.
pub(crate) fn host_mask(bits: u8, prefix: u8) -> u128 {
    let host_bits = u32::from(bits.saturating_sub(prefix));
    if host_bits >= 128 { u128::MAX } else { (1u128 << host_bits) - 1 }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are IPv4 addresses, as in the reference.
pub(crate) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One validated range: `range_start..=range_end` inside `subnet`, with its gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The subnet, always a network address (no host bits set).
    pub subnet: IpNetwork,
    pub range_start: IpAddr,
    pub range_end: IpAddr,
    /// Never allocated; the same family as the subnet, not necessarily inside it.
    pub gateway: IpAddr,
    /// Where the range came from in the config, e.g. `ipam.ranges[0][1]`.
    pub path: String,
}

impl Range {
    pub fn is_ipv4(&self) -> bool {
        self.subnet.is_ipv4()
    }

    pub(crate) fn start(&self) -> u128 {
        to_num(self.range_start)
    }

    pub(crate) fn end(&self) -> u128 {
        to_num(self.range_end)
    }

    /// Whether `ip` is between `range_start` and `range_end` (inclusive), same family.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.is_ipv4() && (self.start()..=self.end()).contains(&to_num(ip))
    }

    /// The prefix of the subnet, for the address handed out (`ip/prefix`).
    pub fn prefix(&self) -> u8 {
        self.subnet.prefix()
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.range_start, self.range_end)
    }
}

/// A pool of one or more ranges of one family; one address is allocated per set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet {
    /// Where the set came from in the config, e.g. `ipam.ranges[1]`.
    pub label: String,
    /// Never empty.
    pub ranges: Vec<Range>,
}

impl RangeSet {
    pub fn is_ipv4(&self) -> bool {
        self.ranges.first().is_some_and(Range::is_ipv4)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_some()
    }

    /// The range holding `ip`, if any.
    pub fn range_for(&self, ip: IpAddr) -> Option<&Range> {
        self.ranges.iter().find(|r| r.contains(ip))
    }

    /// Walks the set in allocation order and returns the first address (with its
    /// range) for which `take` returns true, or None after one full turn.
    ///
    /// The walk starts just after `last` when `last` is in the set, else at the first
    /// range's start. It steps up to a range's end, then goes on at the next range's
    /// start, wrapping around; gateways are skipped. Each address is visited at most
    /// once, so the walk always ends.
    pub fn walk<E>(
        &self,
        last: Option<IpAddr>,
        mut take: impl FnMut(IpAddr, &Range) -> Result<bool, E>,
    ) -> Result<Option<(IpAddr, &Range)>, E> {
        let n = self.ranges.len();
        if n == 0 {
            return Ok(None);
        }
        let v4 = self.is_ipv4();
        let step = |(i, cur): (usize, u128)| -> (usize, u128) {
            let r = &self.ranges[i];
            if cur >= r.end() {
                let j = (i + 1) % n;
                (j, self.ranges[j].start())
            } else {
                (i, cur + 1)
            }
        };
        let after_last = last.and_then(|ip| {
            let i = self.ranges.iter().position(|r| r.contains(ip))?;
            Some(step((i, to_num(ip))))
        });
        let first = after_last.unwrap_or((0, self.ranges[0].start()));
        let mut pos = first;
        loop {
            let r = &self.ranges[pos.0];
            let ip = from_num(v4, pos.1);
            if ip != r.gateway && take(ip, r)? {
                return Ok(Some((ip, r)));
            }
            pos = step(pos);
            if pos == first {
                return Ok(None);
            }
        }
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}
