import { test } from 'node:test';
import assert from 'node:assert/strict';
import { escapeModulePath, isBuildableImportPath, modulePathCandidates } from './module-path.js';

test('upper case is escaped with ! as the proxy protocol says', () => {
  assert.equal(escapeModulePath('github.com/Azure/azure-sdk-for-go'), 'github.com/!azure/azure-sdk-for-go');
  assert.equal(escapeModulePath('example.com/BigCo/X'), 'example.com/!big!co/!x');
  assert.equal(escapeModulePath('example.com/plain'), 'example.com/plain');
});

test('module candidates walk up the import path, longest first', () => {
  assert.deepEqual(modulePathCandidates('example.com/hello/cmd/hello'), ['example.com/hello/cmd/hello', 'example.com/hello/cmd', 'example.com/hello', 'example.com']);
});

test('only host-rooted import paths are buildable', () => {
  assert.equal(isBuildableImportPath('example.com/hello/cmd/hello'), true);
  assert.equal(isBuildableImportPath('fmt'), false);
  assert.equal(isBuildableImportPath('example.com/../etc'), false);
  assert.equal(isBuildableImportPath('example.com//x'), false);
});
