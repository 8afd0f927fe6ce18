//! host-local IPAM as a plugin binary and as an in-process delegate. The allocator and
//! the on-disk store live in `crate::ipam`.

use crate::delegate::BuiltinIpam;
use crate::ipam::{self, HostLocal, StoreDir};
use crate::skel::{Cx, Plugin};
use crate::spec::{CniEnv, CniError, CniResult, NetConf};

pub struct HostLocalPlugin;

impl BuiltinIpam for HostLocalPlugin {
    fn add(&self, env: &CniEnv, conf: &NetConf, dry_run: bool) -> Result<CniResult, CniError> {
        self.add_tracked(env, conf, dry_run).map(|(r, _)| r)
    }
    fn add_tracked(&self, env: &CniEnv, conf: &NetConf, dry_run: bool) -> Result<(CniResult, bool), CniError> {
        conf.require_name()?;
        let hl = HostLocal::from_conf(conf, &env.args)?;
        ipam::allocate_tracked(&hl, &env.container_id, &env.ifname, dry_run)
    }
    fn del(&self, env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
        conf.require_name()?;
        ipam::release(&StoreDir::from_conf(conf)?, &env.container_id, &env.ifname)
    }
    fn check(&self, env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
        conf.require_name()?;
        ipam::check(&StoreDir::from_conf(conf)?, &env.container_id, &env.ifname)
    }
    fn status(&self, env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
        conf.require_name()?;
        ipam::status(&HostLocal::from_conf(conf, &env.args)?)
    }
    fn gc(&self, _env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
        conf.require_name()?;
        // No `cni.dev/valid-attachments` key means the caller said nothing about what is
        // valid (cnitool gc): keep everything rather than release live addresses.
        match &conf.valid_attachments {
            Some(valid) => ipam::gc(&StoreDir::from_conf(conf)?, valid),
            None => Ok(()),
        }
    }
}

impl Plugin for HostLocalPlugin {
    fn name(&self) -> &'static str {
        "host-local"
    }
    fn needs_ip(&self) -> bool {
        false
    }
    fn about(&self) -> &'static str {
        "CNI host-local IPAM plugin (ipcni)"
    }
    fn add(&self, cx: &mut Cx) -> Result<CniResult, CniError> {
        BuiltinIpam::add(self, cx.env, cx.conf, cx.dry_run)
    }
    fn del(&self, cx: &mut Cx) -> Result<(), CniError> {
        if cx.dry_run {
            return Ok(());
        }
        BuiltinIpam::del(self, cx.env, cx.conf)
    }
    fn check(&self, cx: &mut Cx) -> Result<(), CniError> {
        BuiltinIpam::check(self, cx.env, cx.conf)
    }
    fn status(&self, cx: &mut Cx) -> Result<(), CniError> {
        BuiltinIpam::status(self, cx.env, cx.conf)
    }
    fn gc(&self, cx: &mut Cx) -> Result<(), CniError> {
        if cx.dry_run {
            return Ok(());
        }
        BuiltinIpam::gc(self, cx.env, cx.conf)
    }
}
