import { test } from 'node:test';
import assert from 'node:assert/strict';
import { baseImageFor, KoYamlInvalid, parseKoYaml } from './ko-yaml.js';

test('an override wins over the module default, which wins over the server default', () => {
  const yaml = parseKoYaml('defaultBaseImage: registry.example/base:1\nbaseImageOverrides:\n  example.com/m/cmd/special: registry.example/special:2\n');
  assert.equal(baseImageFor(yaml, 'example.com/m/cmd/special', 'server/base'), 'registry.example/special:2');
  assert.equal(baseImageFor(yaml, 'example.com/m/cmd/other', 'server/base'), 'registry.example/base:1');
  assert.equal(baseImageFor(parseKoYaml(''), 'example.com/m', 'server/base'), 'server/base');
});

test('malformed .ko.yaml is refused with what is wrong', () => {
  assert.throws(() => parseKoYaml('defaultBaseImage: [1, 2]'), (err: Error) => err instanceof KoYamlInvalid && /defaultBaseImage/.test(err.message));
  assert.throws(() => parseKoYaml('baseImageOverrides: nope'), /baseImageOverrides is not a mapping/);
  assert.throws(() => parseKoYaml('a: [unclosed'), /not YAML/);
});
