// The official client, npm @actions/cache, against the GHA cache test server: save a directory,
// save it again (the key exists), restore it by prefix and by exact key into an empty
// directory, and miss an absent key. Run by crates/cli/tests/gha.rs with
//   ACTIONS_CACHE_LIB  = .../node_modules/@actions/cache/lib/cache.js
//   WORK_DIR, CACHE_KEY, and the runner variables (ACTIONS_RUNTIME_TOKEN, ACTIONS_RESULTS_URL +
//   ACTIONS_CACHE_SERVICE_V2=true for v2, or ACTIONS_CACHE_URL for v1, RUNNER_TEMP).
// Prints one line `RESULT {json}` (the client logs ::warning:: lines of its own on stdout).
import { pathToFileURL } from 'node:url';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const cache = await import(pathToFileURL(process.env.ACTIONS_CACHE_LIB).href);
const key = process.env.CACHE_KEY;
process.chdir(process.env.WORK_DIR);

const dir = 'data';
fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
fs.writeFileSync(path.join(dir, 'hello.txt'), `saved by @actions/cache under ${key}\n`);
// 3 MiB of incompressible bytes: more than one Azure block and one download range.
const random = crypto.randomBytes(3 << 20);
fs.writeFileSync(path.join(dir, 'sub', 'random.bin'), random);
const digest = (p) => crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');
const want = { hello: digest(path.join(dir, 'hello.txt')), random: digest(path.join(dir, 'sub', 'random.bin')) };
const same = () =>
  fs.existsSync(path.join(dir, 'sub', 'random.bin')) &&
  digest(path.join(dir, 'hello.txt')) === want.hello &&
  digest(path.join(dir, 'sub', 'random.bin')) === want.random;

const saved = await cache.saveCache([dir], key);
const savedAgain = await cache.saveCache([dir], key);

fs.rmSync(dir, { recursive: true });
const prefixHit = await cache.restoreCache([dir], `${key}-absent`, [key.slice(0, key.length - 2)]);
const prefixSame = same();

fs.rmSync(dir, { recursive: true, force: true });
const exactHit = await cache.restoreCache([dir], key);
const exactSame = same();

const miss = await cache.restoreCache([dir], `no-such-key-${key}`);

console.log(
  `RESULT ${JSON.stringify({ saved, savedAgain, prefixHit: prefixHit ?? null, prefixSame, exactHit: exactHit ?? null, exactSame, miss: miss ?? null })}`,
);
