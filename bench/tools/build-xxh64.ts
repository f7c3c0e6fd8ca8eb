// Compiles xxh64Wat (xxh64-src.ts) with binaryen and prints the two base64 strings to paste
// into src/image/xxh64.ts (own memory, then imported memory).
//   node dist/bench/tools/build-xxh64.js
import binaryen from 'binaryen';
import { xxh64Wat } from './xxh64-src.js';

for (const imported of [false, true]) {
  const mod = binaryen.parseText(xxh64Wat(imported));
  binaryen.setOptimizeLevel(2);
  binaryen.setShrinkLevel(1);
  mod.optimize();
  if (!mod.validate()) throw new Error('xxh64Wat does not validate');
  const bytes = mod.emitBinary();
  mod.dispose();
  console.log(`${imported ? 'IMPORTED' : 'OWN'}: ${Buffer.from(bytes).toString('base64')}`);
}
