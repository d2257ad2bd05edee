/** `portshaper detach`: remove everything portshaper attached, optionally its pins too. */
import { DEFAULT_PIN_DIR, removePins } from '../kernel/pins.js';
import { detachPinned } from '../kernel/tc.js';
import { preflight } from '../controller/preflight.js';
import { loadPolicyFile } from '../policy/index.js';
import { parseCommand } from './args.js';

export const DETACH_HELP = `Usage: portshaper detach [--policy FILE | --pin-dir DIR] [--purge]

Remove portshaper's tc filters (only ours: other filters and the clsact qdisc
stay) from every interface the pinned maps list, in this network namespace.
Traffic then flows unlimited. A running agent re-attaches: stop it first.

Options:
  --policy FILE   take the pin directory from this policy
  --pin-dir DIR   pin directory (default ${DEFAULT_PIN_DIR})
  --purge         also remove the pinned maps (counters and bucket credit are lost)
  -h, --help      show this help
`;

/** Run the detach command; returns the exit code. */
export async function runDetach(argv: string[]): Promise<number> {
  const { values } = parseCommand('detach', argv, {
    policy: { type: 'string' },
    'pin-dir': { type: 'string' },
    purge: { type: 'boolean' },
  });
  if (values.help) {
    process.stdout.write(DETACH_HELP);
    return 0;
  }
  preflight('detach');
  let pinDir = values['pin-dir'] ?? DEFAULT_PIN_DIR;
  if (values.policy) pinDir = (await loadPolicyFile(values.policy, { interfaceExists: () => true })).policy.pinDir;
  const detached = detachPinned(pinDir);
  process.stdout.write(detached.length ? `detached from ifindex ${detached.join(', ')}\n` : `nothing attached (pins in ${pinDir})\n`);
  if (values.purge) {
    removePins(pinDir);
    process.stdout.write(`removed pins in ${pinDir}\n`);
  }
  return 0;
}
