# Writes tests/golden/portmap-* and firewall-* (config.json, env, observed.json) from the
# states captured by golden-capture-portmap-firewall.sh into /tmp/gold; then bless with
# IPCNI_BLESS=1 IPCNI_GOLDEN=portmap (and firewall) cargo test --test golden.
import json, os, copy
G = '/work/wt-portmap/tests/golden'
S = {n: json.load(open(f'/tmp/gold/{n}.json')) for n in
     ['empty','pm-ipt','pm-nft','pm-ipt-ref','fw-ipt','fw-ipt-iso','fw-nft','fw-ipt-ref','pm-ipt-tampered','pm-nft-tampered','fw-ipt-tampered']}
def fix(r):
    r = copy.deepcopy(r)
    for i in r['interfaces']:
        if 'sandbox' in i: i['sandbox'] = '/run/netns/ctr1'
    return r
RES = fix(S['empty']['result'])
RES4 = copy.deepcopy(RES); RES4['ips'] = RES4['ips'][:1]
def obs(state, **over):
    o = copy.deepcopy(S[state]['observed'])
    for k, v in over.items():
        o[k.replace('_', ' ')] = v
    return o
NULL = None
MAPS = [{"hostPort":8080,"containerPort":80,"protocol":"tcp"},
        {"hostPort":8081,"containerPort":80,"protocol":"tcp","hostIP":"192.168.1.10"},
        {"hostPort":5353,"containerPort":53,"protocol":"udp"}]
def case(name, plugin, cmd, conf, observed=None, netns_gone=False, extra_env=None):
    d = os.path.join(G, name); os.makedirs(d, exist_ok=True)
    env = [f'PLUGIN={plugin}', f'CNI_COMMAND={cmd}', 'CNI_CONTAINERID=ctr1']
    if cmd not in ('STATUS', 'GC'):
        env += ['CNI_NETNS=/run/netns/ctr1', 'CNI_IFNAME=eth0']
    env += ['CNI_PATH=/nonexistent']
    if netns_gone: env.append('NETNS_STATE=gone')
    env += extra_env or []
    open(os.path.join(d, 'env'), 'w').write('\n'.join(env) + '\n')
    open(os.path.join(d, 'config.json'), 'w').write(json.dumps(conf, indent=2) + '\n')
    p = os.path.join(d, 'observed.json')
    if observed is not None:
        open(p, 'w').write(json.dumps(observed, indent=2, sort_keys=True) + '\n')
    elif os.path.exists(p):
        os.remove(p)
def pm(ver='1.0.0', maps=MAPS, prev=RES, **kw):
    c = {"cniVersion": ver, "name": "podnet", "type": "portmap", "capabilities": {"portMappings": True}}
    c.update(kw)
    if maps is not None: c["runtimeConfig"] = {"portMappings": maps}
    if prev is not None: c["prevResult"] = prev
    return c
def fw(ver='1.0.0', prev=RES, **kw):
    c = {"cniVersion": ver, "name": "podnet", "type": "firewall"}
    c.update(kw)
    if prev is not None: c["prevResult"] = prev
    return c
IPT_DEAD = {'iptables -w -t filter -S INPUT': None}
NFT_DEAD = {'nft list tables': None}
def o(state, d=None):
    x = obs(state); x.update(d or {}); return x

V6MAP = MAPS + [{"hostPort":8443,"containerPort":443,"protocol":"tcp","hostIP":"2001:db8::10"}]
# ---- portmap ADD
case('portmap-add-iptables', 'portmap', 'ADD', pm(maps=V6MAP, backend='iptables'), o('empty'))
case('portmap-add-auto-iptables', 'portmap', 'ADD', pm(maps=MAPS[:1], prev=RES4), o('empty'))
case('portmap-add-auto-nftables', 'portmap', 'ADD', pm(maps=MAPS[:1], prev=RES4), o('empty', IPT_DEAD))
case('portmap-add-nftables', 'portmap', 'ADD', pm(maps=V6MAP, backend='nftables'), o('empty'))
case('portmap-add-nftables-existing', 'portmap', 'ADD', pm(backend='nftables'), o('pm-nft'))
case('portmap-add-iptables-existing', 'portmap', 'ADD', pm(backend='iptables'), o('pm-ipt'))
case('portmap-add-snat-false', 'portmap', 'ADD', pm(maps=MAPS[:2], prev=RES4, snat=False), o('empty'))
case('portmap-add-masq-all', 'portmap', 'ADD', pm(maps=MAPS[:1], masqAll=True), o('empty'))
case('portmap-add-masq-all-nftables', 'portmap', 'ADD', pm(maps=MAPS[:1], masqAll=True, backend='nftables'), o('empty'))
case('portmap-add-external-setmark-chain', 'portmap', 'ADD', pm(maps=MAPS[:1], prev=RES4, externalSetMarkChain='KUBE-MARK-MASQ'), o('empty'))
case('portmap-add-mark-masq-bit', 'portmap', 'ADD', pm(maps=MAPS[:1], prev=RES4, markMasqBit=5), o('empty'))
case('portmap-add-conditions-iptables', 'portmap', 'ADD', pm(maps=MAPS[:1], conditionsV4=["-s","192.168.1.0/24"], conditionsV6=["!","-s","2001:db8::/32"]), o('empty'))
case('portmap-add-conditions-nftables', 'portmap', 'ADD', pm(maps=MAPS[:1], prev=RES4, conditionsV4=["ip","saddr","192.168.1.0/24"]), o('empty'))
case('portmap-add-many-ports', 'portmap', 'ADD', pm(prev=RES4, backend='iptables', maps=[{"hostPort":9000+i,"containerPort":9000+i,"protocol":"tcp"} for i in range(17)]), o('empty'))
case('portmap-add-no-mappings', 'portmap', 'ADD', pm(maps=None), o('empty'))
case('portmap-add-v040-result', 'portmap', 'ADD', pm(ver='0.4.0', maps=MAPS[:1], prev=RES4), o('empty'))
case('portmap-add-v020-result', 'portmap', 'ADD', pm(ver='0.2.0', maps=MAPS[:1], prev={"cniVersion":"0.2.0","ip4":{"ip":"10.88.0.2/24","gateway":"10.88.0.1"}}), o('empty'))
case('portmap-add-no-prevresult', 'portmap', 'ADD', pm(prev=None), o('empty'))
case('portmap-add-bad-host-port', 'portmap', 'ADD', pm(maps=[{"hostPort":0,"containerPort":80,"protocol":"tcp"}]), o('empty'))
case('portmap-add-bad-container-port', 'portmap', 'ADD', pm(maps=[{"hostPort":80,"containerPort":70000,"protocol":"tcp"}]), o('empty'))
case('portmap-add-bad-protocol', 'portmap', 'ADD', pm(maps=[{"hostPort":80,"containerPort":80,"protocol":"icmp"}]), o('empty'))
case('portmap-add-bad-host-ip', 'portmap', 'ADD', pm(maps=[{"hostPort":80,"containerPort":80,"protocol":"tcp","hostIP":"10.0.0.300"}]), o('empty'))
case('portmap-add-bad-backend', 'portmap', 'ADD', pm(backend='ipvs'), o('empty'))
case('portmap-add-backend-conflict', 'portmap', 'ADD', pm(backend='iptables', conditionsV4=["ip","saddr","1.2.3.4"]), o('empty'))
case('portmap-add-mark-and-external-chain', 'portmap', 'ADD', pm(markMasqBit=5, externalSetMarkChain='KUBE-MARK-MASQ'), o('empty'))
case('portmap-add-mark-bit-out-of-range', 'portmap', 'ADD', pm(markMasqBit=32), o('empty'))
case('portmap-add-injection-in-conditions', 'portmap', 'ADD', pm(conditionsV4=["-s","1.2.3.4\n-A INPUT -j DROP"]), o('empty'))
case('portmap-add-iptables-unusable', 'portmap', 'ADD', pm(maps=MAPS[:1], prev=RES4, backend='iptables'), o('empty', {'iptables -w -t nat -S': None}))
# ---- portmap DEL
case('portmap-del-iptables', 'portmap', 'DEL', pm(backend='iptables'), o('pm-ipt'))
case('portmap-del-without-runtime-config', 'portmap', 'DEL', pm(maps=None, prev=None), o('pm-ipt'))
case('portmap-del-reference-rules', 'portmap', 'DEL', pm(maps=None, prev=None), o('pm-ipt-ref'))
case('portmap-del-nftables', 'portmap', 'DEL', pm(maps=None, prev=None, backend='nftables'), o('pm-nft'))
case('portmap-del-rules-gone', 'portmap', 'DEL', pm(), o('empty'), netns_gone=True)
case('portmap-del-no-firewall-tools', 'portmap', 'DEL', pm(), {k: None for k in S['empty']['observed']})
# ---- portmap CHECK
case('portmap-check-iptables', 'portmap', 'CHECK', pm(backend='iptables'), o('pm-ipt'))
case('portmap-check-iptables-tampered', 'portmap', 'CHECK', pm(backend='iptables'), o('pm-ipt-tampered'))
case('portmap-check-ipv4-only', 'portmap', 'CHECK', pm(prev=RES4, backend='iptables'),
     o('pm-ipt', {'ip6tables -w -t nat -S': S['empty']['observed']['ip6tables -w -t nat -S']}))
case('portmap-check-nftables', 'portmap', 'CHECK', pm(backend='nftables'), o('pm-nft'))
case('portmap-check-nftables-tampered', 'portmap', 'CHECK', pm(backend='nftables'), o('pm-nft-tampered'))
case('portmap-check-no-prevresult', 'portmap', 'CHECK', pm(prev=None), o('pm-ipt'))
# ---- portmap GC / STATUS
case('portmap-gc', 'portmap', 'GC', {"cniVersion":"1.1.0","name":"podnet","type":"portmap","cni.dev/valid-attachments":[{"containerID":"ctr2","ifname":"eth0"}]}, o('pm-ipt'))
case('portmap-gc-keeps-valid', 'portmap', 'GC', {"cniVersion":"1.1.0","name":"podnet","type":"portmap","cni.dev/valid-attachments":[{"containerID":"ctr1","ifname":"eth0"}]}, o('pm-ipt'))
case('portmap-status', 'portmap', 'STATUS', {"cniVersion":"1.1.0","name":"podnet","type":"portmap"}, o('empty'))
case('portmap-status-broken-backend', 'portmap', 'STATUS', {"cniVersion":"1.1.0","name":"podnet","type":"portmap","backend":"nftables"}, o('empty', NFT_DEAD))

# ---- firewall
case('firewall-add-iptables', 'firewall', 'ADD', fw(), o('empty'))
case('firewall-add-nftables', 'firewall', 'ADD', fw(backend='nftables'), o('empty'))
case('firewall-add-nftables-existing', 'firewall', 'ADD', fw(backend='nftables'), o('fw-nft'))
case('firewall-add-iptables-existing', 'firewall', 'ADD', fw(), o('fw-ipt'))
case('firewall-add-admin-chain-name', 'firewall', 'ADD', fw(prev=RES4, iptablesAdminChainName='MY-ADMIN'), o('empty'))
case('firewall-add-same-bridge', 'firewall', 'ADD', fw(prev=RES4, ingressPolicy='same-bridge'), o('empty'))
case('firewall-add-isolated', 'firewall', 'ADD', fw(prev=RES4, ingressPolicy='isolated'), o('empty'))
case('firewall-add-isolated-nftables', 'firewall', 'ADD', fw(prev=RES4, ingressPolicy='isolated', backend='nftables'), o('empty'))
case('firewall-add-v040-result', 'firewall', 'ADD', fw(ver='0.4.0', prev=RES4), o('empty'))
case('firewall-add-v031-refused', 'firewall', 'ADD', fw(ver='0.3.1', prev=RES4), o('empty'))
case('firewall-add-no-prevresult', 'firewall', 'ADD', fw(prev=None), o('empty'))
case('firewall-add-bad-ingress-policy', 'firewall', 'ADD', fw(ingressPolicy='closed'), o('empty'))
case('firewall-add-firewalld-refused', 'firewall', 'ADD', fw(backend='firewalld'), o('empty'))
case('firewall-add-injection-in-admin-chain', 'firewall', 'ADD', fw(iptablesAdminChainName='X\n-A INPUT -j DROP'), o('empty'))
case('firewall-add-same-bridge-without-bridge', 'firewall', 'ADD', fw(ingressPolicy='same-bridge', prev={"cniVersion":"1.0.0","ips":[{"address":"10.88.0.2/24"}]}), o('empty'))
case('firewall-del-iptables', 'firewall', 'DEL', fw(), o('fw-ipt'))
case('firewall-del-without-prevresult', 'firewall', 'DEL', fw(prev=None), o('fw-ipt'))
case('firewall-del-reference-rules', 'firewall', 'DEL', fw(), o('fw-ipt-ref'))
case('firewall-del-nftables', 'firewall', 'DEL', fw(backend='nftables', prev=None), o('fw-nft'))
case('firewall-del-rules-gone', 'firewall', 'DEL', fw(), o('empty'), netns_gone=True)
case('firewall-check-iptables', 'firewall', 'CHECK', fw(), o('fw-ipt'))
case('firewall-check-reference-rules', 'firewall', 'CHECK', fw(), o('fw-ipt-ref'))
case('firewall-check-iptables-tampered', 'firewall', 'CHECK', fw(), o('fw-ipt-tampered'))
case('firewall-check-same-bridge', 'firewall', 'CHECK', fw(ingressPolicy='same-bridge'), o('fw-ipt-iso'))
case('firewall-check-same-bridge-missing', 'firewall', 'CHECK', fw(ingressPolicy='same-bridge'), o('fw-ipt'))
case('firewall-check-nftables', 'firewall', 'CHECK', fw(backend='nftables'), o('fw-nft'))
case('firewall-check-nftables-missing', 'firewall', 'CHECK', fw(backend='nftables'), o('empty'))
case('firewall-gc', 'firewall', 'GC', {"cniVersion":"1.1.0","name":"podnet","type":"firewall","cni.dev/valid-attachments":[{"containerID":"ctr2","ifname":"eth0"}]}, o('fw-ipt'))
case('firewall-gc-nftables', 'firewall', 'GC', {"cniVersion":"1.1.0","name":"podnet","type":"firewall","cni.dev/valid-attachments":[]}, o('fw-nft'))
case('firewall-status-broken-backend', 'firewall', 'STATUS', {"cniVersion":"1.1.0","name":"podnet","type":"firewall"}, o('empty', {'iptables -w -t filter -S INPUT': None}))
# ---- port ranges (podman's "range"; expanded to one mapping per port)
RANGE = [{"hostPort":8000,"containerPort":9000,"protocol":"tcp","range":3}]
case('portmap-add-range-iptables', 'portmap', 'ADD', pm(maps=RANGE, prev=RES4, backend='iptables'), o('empty'))
case('portmap-add-range-nftables', 'portmap', 'ADD', pm(maps=RANGE, prev=RES4, backend='nftables'), o('empty'))
case('portmap-add-range-past-65535', 'portmap', 'ADD', pm(maps=[{"hostPort":65534,"containerPort":80,"range":3}]), o('empty'))
case('portmap-add-range-zero', 'portmap', 'ADD', pm(maps=[{"hostPort":8000,"containerPort":80,"range":0}]), o('empty'))
