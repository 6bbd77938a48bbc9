/**
 * /etc/passwd and /etc/group from a configuration's accounts, merged over what the
 * packages installed (a baselayout package usually ships root's lines): entries whose
 * name is already there are kept as the package wrote them, new ones are appended.
 */
import type { ApkoGroup, ApkoUser } from './image-config.js';

function merge(existing: string, lines: Array<{ name: string; line: string }>): string {
  const text = existing && !existing.endsWith('\n') ? existing + '\n' : existing;
  const present = new Set(text.split('\n').map((l) => l.split(':')[0]).filter(Boolean));
  return text + lines.filter((l) => !present.has(l.name)).map((l) => l.line + '\n').join('');
}

export function passwdFile(existing: string, users: readonly ApkoUser[]): string {
  return merge(
    existing,
    users.map((u) => ({
      name: u.username,
      line: `${u.username}:x:${u.uid}:${u.gid ?? u.uid}:${u.username}:${u.homedir ?? `/home/${u.username}`}:${u.shell ?? '/bin/sh'}`,
    })),
  );
}

export function groupFile(existing: string, groups: readonly ApkoGroup[]): string {
  return merge(
    existing,
    groups.map((g) => ({ name: g.groupname, line: `${g.groupname}:x:${g.gid}:${g.members.join(',')}` })),
  );
}
