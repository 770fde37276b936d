// The package from TypeScript, compiled with the compiler options of Pi's
// reference app (target ES5, module commonjs, strict, no skipLibCheck), in a
// project that has the package installed under node_modules like an app does;
// then the compiled CommonJS app serves the vectors through its mounted Router.
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { after, before, test } = require('node:test');
const { vectors, vec } = require('../testsupport/vectors');
const { listen, send } = require('../testsupport/http');

const pkg = path.join(__dirname, '..');
const tsc = path.join(pkg, 'node_modules', 'typescript', 'bin', 'tsc');
let project;

before(() => {
  project = fs.mkdtempSync(path.join(os.tmpdir(), 'pi-guard-verify-ts-'));
  for (const f of fs.readdirSync(path.join(pkg, 'tscheck'))) fs.copyFileSync(path.join(pkg, 'tscheck', f), path.join(project, f));
  const modules = path.join(project, 'node_modules');
  fs.mkdirSync(modules);
  fs.symlinkSync(pkg, path.join(modules, 'caddy-pi-guard-verify'), 'dir');
  for (const dep of ['express', '@types']) fs.symlinkSync(path.join(pkg, 'node_modules', dep), path.join(modules, dep), 'dir');
});
after(() => fs.rmSync(project, { recursive: true, force: true }));

/** Runs tsc on a tsconfig of the project; fails the test with tsc's own output. */
function compile(config) {
  try {
    execFileSync(process.execPath, [tsc, '-p', path.join(project, config)], { encoding: 'utf8', stdio: 'pipe' });
  } catch (err) {
    assert.fail(`tsc -p ${config} failed:\n${err.stdout}${err.stderr}`);
  }
}

test('compiles with the reference app\'s tsconfig, and the CommonJS output serves a mounted Router', async () => {
  compile('tsconfig.json');
  const out = path.join(project, 'build', 'app.js');
  assert.match(fs.readFileSync(out, 'utf8'), /require\("caddy-pi-guard-verify"\)/, 'compiled to CommonJS');
  const { createApp } = require(out);
  const server = await listen(createApp(vectors.secret, vectors.now));
  try {
    for (const [name, paid] of [['valid-notice-approve', false], ['valid-complete', true], ['valid-incomplete', true], ['valid-notice-cancel', false]]) {
      const c = vec(name);
      const res = await send(server.base, c);
      assert.equal(res.status, 200, `${name}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.sub, c.claims.sub);
      assert.equal(res.body.paid, paid, name);
    }
    const refused = await send(server.base, vec('notice-as-verified'), { path: '/payments/complete' });
    assert.deepEqual([refused.status, refused.body.error], [401, 'payment_not_verified']);
    const manual = await send(server.base, vec('valid-complete'), { path: '/payments/manual' });
    assert.deepEqual([manual.status, manual.body.code], [401, 'binding'], 'the token is bound to /payments/complete');
  } finally {
    await server.close();
  }
});

test('type-checks from an ES module (module nodenext)', () => {
  compile('tsconfig.esm.json');
});
