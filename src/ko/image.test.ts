import { test } from 'node:test';
import assert from 'node:assert/strict';
import { koEnv } from './image.js';

test('ko appends /ko-app to PATH and sets KO_DATA_PATH once', () => {
  assert.deepEqual(koEnv(['PATH=/usr/bin:/bin', 'TZ=UTC']), ['PATH=/usr/bin:/bin:/ko-app', 'TZ=UTC', 'KO_DATA_PATH=/var/run/ko']);
  assert.deepEqual(koEnv([]), ['PATH=/ko-app', 'KO_DATA_PATH=/var/run/ko']);
  assert.deepEqual(koEnv(['KO_DATA_PATH=/elsewhere', 'PATH=']), ['PATH=/ko-app', 'KO_DATA_PATH=/var/run/ko']);
});
