# What real cloud-init makes of floe's metadata service, run inside a "guest"
# namespace by netns.test.ts (not used by the agent): cloud-init's own code
# reads the SMBIOS serial, fetches the NoCloud-net seed, processes the
# vendor-data (MIME multipart) and runs what floe put there: the phone_home
# module and the webhook reporter's finish event of modules-final.
# argv: <smbios serial> <result of modules-final: SUCCESS|WARN|FAIL>
import json
import logging
import sys
import tempfile

import yaml
from cloudinit import helpers, reporting, util
from cloudinit.config import cc_phone_home
from cloudinit.reporting import events
from cloudinit.sources import DataSourceNoCloud
from cloudinit.user_data import UserDataProcessor

serial, result = sys.argv[1], sys.argv[2]
log = logging.getLogger("probe")

md = {}
if not DataSourceNoCloud.load_cmdline_data(md, serial):
    sys.exit("the serial does not select NoCloud")
seedfrom = md["seedfrom"]
meta, user, vendor = util.read_seeded(seedfrom, timeout=5, retries=0)

# vendor-data is processed like user-data: MIME parts, types guessed from first lines.
paths = helpers.Paths({"cloud_dir": tempfile.mkdtemp()})
message = UserDataProcessor(paths).process(vendor)
parts, cfg = [], {}
for part in message.walk():
    if part.get_content_maintype() == "multipart":
        continue
    payload = part.get_payload(decode=True).decode()
    parts.append([part.get_content_type(), payload.splitlines()[0]])
    if part.get_content_type() == "text/cloud-config":
        cfg = util.mergemanydict([cfg, yaml.safe_load(payload)])


class Hostname:
    def __init__(self, name):
        self.hostname = name


class Cloud:
    paths = paths

    def get_instance_id(self):
        return meta["instance-id"]

    def get_hostname(self, fqdn=False):
        return Hostname(meta["local-hostname"])


cc_phone_home.handle("phone_home", cfg, Cloud(), log, [])
reporting.update_configuration(cfg.get("reporting", {}))
events.report_finish_event("modules-final", "running modules for final", result=getattr(events.status, result))
reporting.flush_events()

print(json.dumps({
    "seedfrom": seedfrom,
    "dsmode": md.get("dsmode"),
    "meta": meta,
    "user": user.decode(),
    "parts": parts,
    "cfg": sorted(cfg.keys()),
}))
