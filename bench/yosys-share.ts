// Writes yosys's data files (techmap libraries and the like) from @yowasp/yosys's
// gen/resources-yosys.js, where the package keeps them, to a directory the bench preopens as
// /share for yosys.wasm (which looks for them there, as the package's own runtime places them):
//   node dist/bench/yosys-share.js PATH/TO/resources-yosys.js DEST
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

type Tree = { [name: string]: Tree | string | Uint8Array };

function put(dir: string, tree: Tree): void {
  mkdirSync(dir, { recursive: true });
  for (const [name, v] of Object.entries(tree)) {
    if (typeof v === 'string' || v instanceof Uint8Array) writeFileSync(join(dir, name), v);
    else put(join(dir, name), v);
  }
}

const [resources, dest] = process.argv.slice(2);
if (resources === undefined || dest === undefined) {
  process.stderr.write('usage: yosys-share.js RESOURCES_JS DEST\n');
  process.exit(2);
}
const { filesystem } = await import(pathToFileURL(resources).href) as { filesystem: { share?: Tree } };
if (filesystem?.share === undefined) {
  process.stderr.write(`yosys-share: ${resources} has no filesystem.share\n`);
  process.exit(1);
}
put(dest, filesystem.share);
