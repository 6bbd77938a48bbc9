/**
 * A directory tree as comparable data: every path under a root (the root itself as
 * `.`), sorted, with type, permission bits, and content digest or symlink target.
 * Names that share an inode carry the same `linkGroup` (the group's first path), so two
 * trees compare equal only if their hardlinks group the same names.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import path from 'node:path';

export type TreeNodeType = 'dir' | 'file' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';

export interface TreeNode {
  /** Relative to the root, `/`-separated; `.` for the root. */
  path: string;
  type: TreeNodeType;
  /** Permission bits with setuid/setgid/sticky. */
  mode: number;
  /** Bytes of a regular file; 0 for anything else (directory sizes depend on the filesystem). */
  size: number;
  sha256?: string;
  linkTarget?: string;
  /** Present when several names in the tree share this inode. */
  linkGroup?: string;
}

async function fileSha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export async function readTree(root: string): Promise<TreeNode[]> {
  const nodes: TreeNode[] = [];
  const inodes = new Map<string, string[]>();
  const nodeInode = new Map<TreeNode, string>();

  const visit = async (rel: string): Promise<void> => {
    const abs = rel === '.' ? root : path.join(root, rel);
    const st = await lstat(abs);
    let node: TreeNode;
    if (st.isDirectory()) node = { path: rel, type: 'dir', mode: st.mode & 0o7777, size: 0 };
    else if (st.isFile()) node = { path: rel, type: 'file', mode: st.mode & 0o7777, size: st.size, sha256: await fileSha256(abs) };
    else if (st.isSymbolicLink()) node = { path: rel, type: 'symlink', mode: st.mode & 0o7777, size: 0, linkTarget: await readlink(abs) };
    else if (st.isCharacterDevice()) node = { path: rel, type: 'char', mode: st.mode & 0o7777, size: 0 };
    else if (st.isBlockDevice()) node = { path: rel, type: 'block', mode: st.mode & 0o7777, size: 0 };
    else if (st.isFIFO()) node = { path: rel, type: 'fifo', mode: st.mode & 0o7777, size: 0 };
    else node = { path: rel, type: 'socket', mode: st.mode & 0o7777, size: 0 };
    nodes.push(node);
    if (node.type !== 'dir') {
      const key = `${st.dev}:${st.ino}`;
      inodes.set(key, [...(inodes.get(key) ?? []), rel]);
      nodeInode.set(node, key);
    }
    if (node.type === 'dir') {
      for (const name of await readdir(abs)) await visit(rel === '.' ? name : `${rel}/${name}`);
    }
  };
  await visit('.');

  for (const [node, key] of nodeInode) {
    const group = inodes.get(key)!;
    if (group.length > 1) node.linkGroup = [...group].sort()[0];
  }
  return nodes.sort((a, b) => (a.path === b.path ? 0 : a.path === '.' ? -1 : b.path === '.' ? 1 : Buffer.compare(Buffer.from(a.path), Buffer.from(b.path))));
}
