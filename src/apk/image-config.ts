/**
 * The part of apko's ImageConfiguration YAML that kontain honours: contents
 * (repositories, keyring, packages), accounts, entrypoint.command, cmd, environment,
 * work-dir and archs. Other keys are ignored (and listed in `ignored`, so the log can say
 * so); wrong types are refused with the key's name.
 */
import { parse } from 'yaml';
import { apkArchOf } from './arch.js';
import { ApkError } from './errors.js';
import { shellWords } from './shell-words.js';

export interface ApkoUser {
  username: string;
  uid: number;
  gid?: number;
  shell?: string;
  homedir?: string;
}

export interface ApkoGroup {
  groupname: string;
  gid: number;
  members: string[];
}

/** Runtime settings of the image (from an apko configuration, or defaults). */
export interface ApkoSettings {
  users: ApkoUser[];
  groups: ApkoGroup[];
  runAs?: string;
  entrypoint?: string[];
  cmd?: string[];
  environment: Record<string, string>;
  workDir?: string;
}

/** What kontain honours of an apko ImageConfiguration. */
export interface ApkoImage extends ApkoSettings {
  repositories: string[];
  keyring: string[];
  packages: string[];
  /** apk architecture names; empty means "the operator's default". */
  archs: string[];
  /** Top-level keys present but not honoured (logged). */
  ignored: string[];
}

const HONOURED = new Set(['contents', 'accounts', 'entrypoint', 'cmd', 'environment', 'work-dir', 'archs']);

function bad(what: string, why: string): never {
  throw new ApkError('malformed', `apko configuration: ${what} ${why}`);
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function obj(v: unknown, what: string): Obj {
  if (v === undefined || v === null) return {};
  if (!isObj(v)) bad(what, 'must be a mapping');
  return v;
}

function strings(v: unknown, what: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string' && typeof s !== 'number')) bad(what, 'must be a list of strings');
  return (v as Array<string | number>).map(String);
}

function optionalString(v: unknown, what: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' && typeof v !== 'number') bad(what, 'must be a string');
  return String(v);
}

function id(v: unknown, what: string, required: boolean): number | undefined {
  if (v === undefined || v === null) return required ? bad(what, 'is required') : undefined;
  const n = typeof v === 'string' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 2 ** 32 - 2) bad(what, 'must be a non-negative integer');
  return n as number;
}

function words(text: string | undefined, what: string): string[] | undefined {
  if (text === undefined) return undefined;
  try {
    return shellWords(text);
  } catch (err) {
    return bad(what, (err as Error).message);
  }
}

/** Safe account names only: they are written verbatim into /etc/passwd and /etc/group. */
const NAME = /^[a-z_][a-z0-9_.-]*\$?$/i;

export function parseApkoImage(text: string): ApkoImage {
  let doc: unknown;
  try {
    doc = parse(text, { maxAliasCount: 100 });
  } catch (err) {
    bad('is not valid YAML:', (err as Error).message.split('\n')[0]!);
  }
  const top = obj(doc, 'the document');
  const contents = obj(top.contents, 'contents');
  const accounts = obj(top.accounts, 'accounts');
  const entrypoint = obj(top.entrypoint, 'entrypoint');
  const env = obj(top.environment, 'environment');

  const users = (Array.isArray(accounts.users) ? accounts.users : accounts.users == null ? [] : bad('accounts.users', 'must be a list')).map(
    (u: unknown, i: number): ApkoUser => {
      const user = obj(u, `accounts.users[${i}]`);
      const username = optionalString(user.username, `accounts.users[${i}].username`) ?? bad(`accounts.users[${i}].username`, 'is required');
      if (!NAME.test(username)) bad(`accounts.users[${i}].username`, `${JSON.stringify(username)} is not a valid user name`);
      const shell = optionalString(user.shell, `accounts.users[${i}].shell`);
      const homedir = optionalString(user.homedir, `accounts.users[${i}].homedir`);
      for (const [k, v] of [['shell', shell], ['homedir', homedir]] as const) {
        if (v !== undefined && /[:\n]/.test(v)) bad(`accounts.users[${i}].${k}`, 'may not contain ":" or a newline');
      }
      return { username, uid: id(user.uid, `accounts.users[${i}].uid`, true)!, gid: id(user.gid, `accounts.users[${i}].gid`, false), shell, homedir };
    },
  );
  const groups = (Array.isArray(accounts.groups) ? accounts.groups : accounts.groups == null ? [] : bad('accounts.groups', 'must be a list')).map(
    (g: unknown, i: number): ApkoGroup => {
      const group = obj(g, `accounts.groups[${i}]`);
      const groupname = optionalString(group.groupname, `accounts.groups[${i}].groupname`) ?? bad(`accounts.groups[${i}].groupname`, 'is required');
      if (!NAME.test(groupname)) bad(`accounts.groups[${i}].groupname`, `${JSON.stringify(groupname)} is not a valid group name`);
      const members = strings(group.members, `accounts.groups[${i}].members`);
      for (const m of members) if (!NAME.test(m)) bad(`accounts.groups[${i}].members`, `${JSON.stringify(m)} is not a valid user name`);
      return { groupname, gid: id(group.gid, `accounts.groups[${i}].gid`, true)!, members };
    },
  );

  const environment: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (!/^[^=\0]+$/.test(k)) bad(`environment key ${JSON.stringify(k)}`, 'is not a variable name');
    environment[k] = optionalString(v, `environment.${k}`) ?? '';
  }

  const archs = strings(top.archs, 'archs').map((a) => apkArchOf(a) ?? bad('archs', `entry ${JSON.stringify(a)} is not an architecture apko knows (amd64, arm64, 386, arm/v6, arm/v7, ppc64le, riscv64, s390x)`));

  const command = optionalString(entrypoint.command, 'entrypoint.command');
  const runAs = optionalString(accounts['run-as'], 'accounts.run-as');
  return {
    repositories: strings(contents.repositories, 'contents.repositories'),
    keyring: strings(contents.keyring, 'contents.keyring'),
    packages: strings(contents.packages, 'contents.packages'),
    archs: [...new Set(archs)],
    users,
    groups,
    ...(runAs !== undefined ? { runAs } : {}),
    ...(command !== undefined ? { entrypoint: words(command, 'entrypoint.command') } : {}),
    ...(top.cmd !== undefined && top.cmd !== null ? { cmd: words(optionalString(top.cmd, 'cmd'), 'cmd') } : {}),
    environment,
    ...(top['work-dir'] != null ? { workDir: optionalString(top['work-dir'], 'work-dir') } : {}),
    ignored: Object.keys(top).filter((k) => !HONOURED.has(k)),
  };
}
