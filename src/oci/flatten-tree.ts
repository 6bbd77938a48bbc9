/**
 * The in-memory filesystem model the flattener replays layers into (image-format spec
 * §6-7): metadata only. A regular file's bytes are represented by a `ContentRef` chosen
 * by the caller (where it spooled them), never by the bytes themselves.
 *
 * Layers are applied bottom first, entry by entry in tar order, as containerd applies
 * them, with one refinement the spec asks for: whiteouts and opaque markers only hide
 * what lower layers made, wherever they sit in their own layer. Every node remembers the
 * last layer that created or passed through it (`touched`), which is how "made by a lower
 * layer" is told apart from "made by this one".
 *
 * Non-directories are names for an `Inode`, so hardlinks are just two names for one
 * inode: deleting or replacing one name leaves the others with the old content, and the
 * emitter links a group to whichever surviving name sorts first.
 */
import { NO_XATTRS, type TarHeader } from './estargz-tar.js';

export interface Attrs {
  /** Permission bits with setuid/setgid/sticky (0o7777); the file type lives in the node. */
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  /** Seconds since the epoch. */
  mtime: number;
  xattrs: ReadonlyMap<string, Buffer>;
}

export type InodeType = 'reg' | 'symlink' | 'char' | 'block' | 'fifo';

export interface Inode<C> {
  type: InodeType;
  attrs: Attrs;
  /** Payload size (regular files). */
  size: number;
  /** Where a non-empty regular file's bytes are (opaque to the tree). */
  content: C | undefined;
  /** Symlink target as written (not cleaned: relative targets mean what they say). */
  linkTarget: string;
  devMajor: number;
  devMinor: number;
  /** Names in the tree pointing at this inode. */
  links: number;
}

export interface DirNode<C> {
  kind: 'dir';
  attrs: Attrs;
  children: Map<string, Node<C>>;
  /** The last layer that created this directory or wrote anything beneath it. */
  touched: number;
  /** The layer whose entry set `attrs`; -1 when the directory was only implied by a path. */
  attrsLayer: number;
}

export interface FileNode<C> {
  kind: 'file';
  inode: Inode<C>;
  touched: number;
}

export type Node<C> = DirNode<C> | FileNode<C>;

export interface TreeEntry<C> {
  /** Root-relative path without leading `./` or `/`; '' is the root. */
  path: string;
  node: Node<C>;
}

/** A layer entry that cannot be applied; names the layer and entry so a user can find it. */
export class FlattenError extends Error {
  constructor(readonly layer: number, readonly entry: string, message: string) {
    super(`layer ${layer}, entry ${JSON.stringify(entry)}: ${message}`);
    this.name = 'FlattenError';
  }
}

const OPAQUE = '.wh..wh..opq';
const WHITEOUT = '.wh.';
/** As securejoin (which umoci uses) allows; Linux itself stops at 40. */
const MAX_SYMLINKS = 255;

/**
 * Splits a tar entry name into clean root-relative components: `./a`, `/a`, `a/` and
 * `a/./b/../` all name the same paths. Undefined when the name escapes the root.
 */
export function cleanPath(name: string): string[] | undefined {
  const out: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length === 0) return undefined;
      out.pop();
      continue;
    }
    out.push(part);
  }
  return out;
}

/** True when a tar entry is a whiteout marker (never materialised, carries no content). */
export function isWhiteoutName(name: string): boolean {
  const base = name.replace(/\/+$/, '').split('/').pop() ?? '';
  return base.startsWith(WHITEOUT);
}

export function implicitAttrs(): Attrs {
  // What containerd and umoci give a parent directory no entry described.
  return { mode: 0o755, uid: 0, gid: 0, uname: '', gname: '', mtime: 0, xattrs: NO_XATTRS };
}

function attrsOf(h: TarHeader): Attrs {
  return {
    mode: h.mode & 0o7777,
    uid: h.uid,
    gid: h.gid,
    uname: h.uname,
    gname: h.gname,
    mtime: h.mtime,
    // Never changed once read, so the header's map (often the shared empty one) is kept as is.
    xattrs: h.xattrs,
  };
}

class NotADirectory extends Error {}

export class FlattenTree<C> {
  readonly root: DirNode<C> = { kind: 'dir', attrs: implicitAttrs(), children: new Map(), touched: -1, attrsLayer: -1 };
  private layer = -1;

  /**
   * @param contentHooks told when a file's content becomes part of the tree (`adopt`) and
   *   when the last name of its inode leaves it (`release`), so the caller can free the
   *   spooled bytes of what a later layer deleted or replaced.
   */
  constructor(private readonly contentHooks: { adopt?: (content: C) => void; release?: (content: C) => void } = {}) {}

  beginLayer(index: number): void {
    this.layer = index;
  }

  /**
   * Applies one entry of the current layer. `content` is where a regular file's bytes
   * were put (undefined for empty files and other types). Returns false when the entry
   * was dropped (a name escaping the root, an invalid whiteout).
   */
  apply(h: TarHeader, content?: C): boolean {
    try {
      return this.applyEntry(h, content);
    } catch (err) {
      if (err instanceof NotADirectory) throw new FlattenError(this.layer, h.name, err.message);
      throw err;
    }
  }

  private applyEntry(h: TarHeader, content: C | undefined): boolean {
    const parts = cleanPath(h.name);
    if (!parts) return false;
    if (parts.length === 0) {
      // The root itself ("./"): only a directory entry makes sense there.
      if (h.type !== 'dir') return false;
      this.root.attrs = attrsOf(h);
      this.root.attrsLayer = this.layer;
      return true;
    }
    const base = parts[parts.length - 1]!;
    // Like containerd, a marker's directory is created if a lower layer lacked it: the
    // marker says the directory exists in this layer.
    const parent = this.resolveDir(parts.slice(0, -1), true)!;

    if (base === OPAQUE) {
      this.hideLower(parent);
      return true;
    }
    if (base.startsWith(WHITEOUT)) {
      const victim = base.slice(WHITEOUT.length);
      if (victim === '') return false;
      const node = parent.children.get(victim);
      if (node) this.whiteout(parent, victim, node);
      return true;
    }

    const existing = parent.children.get(base);
    if (h.type === 'dir') {
      if (existing?.kind === 'dir') {
        // Dir over dir: keep the children, take the new attributes.
        existing.attrs = attrsOf(h);
        existing.attrsLayer = existing.touched = this.layer;
        return true;
      }
      if (existing) this.remove(existing);
      parent.children.set(base, { kind: 'dir', attrs: attrsOf(h), children: new Map(), touched: this.layer, attrsLayer: this.layer });
      return true;
    }

    let inode: Inode<C>;
    if (h.type === 'hardlink') {
      // The link entry's own mode/owner/mtime are ignored: a hardlink is another name for
      // the inode, which keeps its target's attributes. umoci does the same (Docker instead
      // applies them to the shared inode); producers write identical values anyway.
      const target = this.linkTarget(h);
      if (!target) return false;
      inode = target;
    } else {
      inode = {
        type: h.type,
        attrs: attrsOf(h),
        size: h.type === 'reg' ? h.size : 0,
        content: h.type === 'reg' && h.size > 0 ? content : undefined,
        linkTarget: h.type === 'symlink' ? h.linkName : '',
        devMajor: h.devMajor,
        devMinor: h.devMinor,
        links: 0,
      };
    }
    if (inode.links === 0 && inode.content !== undefined) this.contentHooks.adopt?.(inode.content);
    // Count the new name before dropping the old one: a link may replace its own target.
    inode.links++;
    if (existing) this.remove(existing);
    parent.children.set(base, { kind: 'file', inode, touched: this.layer });
    return true;
  }

  /**
   * The inode a hardlink entry names. Like umoci, parent directories are resolved through
   * symlinks but the last component is not (a hardlink to a symlink is a real thing).
   */
  private linkTarget(h: TarHeader): Inode<C> | undefined {
    const parts = cleanPath(h.linkName);
    if (!parts) return undefined;
    if (parts.length === 0) throw new FlattenError(this.layer, h.name, 'hardlink to the root directory');
    let dir: DirNode<C> | undefined;
    try {
      dir = this.resolveDir(parts.slice(0, -1), false);
    } catch (err) {
      if (!(err instanceof NotADirectory)) throw err;
    }
    const node = dir?.children.get(parts[parts.length - 1]!);
    if (!node) throw new FlattenError(this.layer, h.name, `hardlink target ${JSON.stringify(h.linkName)} does not exist in this or a lower layer`);
    if (node.kind === 'dir') throw new FlattenError(this.layer, h.name, `hardlink target ${JSON.stringify(h.linkName)} is a directory`);
    return node.inode;
  }

  /**
   * The directory a path names, following symlinks inside the root (`..` and absolute
   * targets never leave it). With `create`, missing directories are made (implicit
   * attributes) and every directory passed is marked as touched by this layer; a
   * non-directory in the way is an error, as it is for containerd.
   */
  private resolveDir(parts: string[], create: boolean): DirNode<C> | undefined {
    const stack = this.walk([this.root], parts, create, { left: MAX_SYMLINKS });
    return stack?.[stack.length - 1];
  }

  private walk(stack: DirNode<C>[], parts: string[], create: boolean, budget: { left: number }): DirNode<C>[] | undefined {
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]!;
      if (part === '' || part === '.') continue;
      if (part === '..') {
        if (stack.length > 1) stack.pop();
        continue;
      }
      const dir = stack[stack.length - 1]!;
      let child = dir.children.get(part);
      if (!child) {
        if (!create) return undefined;
        child = { kind: 'dir', attrs: implicitAttrs(), children: new Map(), touched: this.layer, attrsLayer: -1 };
        dir.children.set(part, child);
      }
      if (child.kind === 'dir') {
        if (create) child.touched = this.layer;
        stack.push(child);
        continue;
      }
      const inode = child.inode;
      const where = parts.slice(0, i + 1).join('/');
      if (inode.type !== 'symlink') {
        if (!create) return undefined;
        throw new NotADirectory(`${JSON.stringify(where)} is not a directory`);
      }
      if (--budget.left < 0) throw new NotADirectory(`too many levels of symbolic links at ${JSON.stringify(where)}`);
      if (inode.linkTarget === '') {
        if (!create) return undefined;
        throw new NotADirectory(`${JSON.stringify(where)} is a symlink with an empty target`);
      }
      const from = inode.linkTarget.startsWith('/') ? [this.root] : stack.slice();
      const resolved = this.walk(from, inode.linkTarget.split('/'), create, budget);
      if (!resolved) return undefined;
      stack = resolved;
    }
    return stack;
  }

  /** `.wh.<name>`: removes a lower layer's `name`; what this layer made there stays. */
  private whiteout(parent: DirNode<C>, name: string, node: Node<C>): void {
    if (node.touched < this.layer) {
      parent.children.delete(name);
      this.remove(node);
    } else if (node.kind === 'dir') {
      // The lower directory is gone and this layer's one takes its place: as if the
      // whiteout had come first, the lower children and attributes go.
      if (node.attrsLayer < this.layer) node.attrs = implicitAttrs();
      this.hideLower(node);
    }
  }

  /** Opaque directory: every lower-layer child goes, recursively; this layer's entries stay. */
  private hideLower(dir: DirNode<C>): void {
    for (const [name, child] of dir.children) {
      if (child.touched < this.layer) {
        dir.children.delete(name);
        this.remove(child);
      } else if (child.kind === 'dir') {
        if (child.attrsLayer < this.layer) child.attrs = implicitAttrs();
        this.hideLower(child);
      }
    }
  }

  /** Drops a detached subtree's names, releasing inodes that no name points at any more. */
  private remove(node: Node<C>): void {
    if (node.kind === 'file') {
      const inode = node.inode;
      if (--inode.links === 0 && inode.content !== undefined) this.contentHooks.release?.(inode.content);
      return;
    }
    for (const child of node.children.values()) this.remove(child);
  }

  /**
   * Every path, sorted by the bytes of its UTF-8 name: deterministic, and a parent (a
   * prefix) always sorts before its children. The root comes first as ''.
   */
  entries(): TreeEntry<C>[] {
    const out: TreeEntry<C>[] = [{ path: '', node: this.root }];
    const visit = (dir: DirNode<C>, prefix: string) => {
      for (const [name, child] of dir.children) {
        const path = prefix === '' ? name : `${prefix}/${name}`;
        out.push({ path, node: child });
        if (child.kind === 'dir') visit(child, path);
      }
    };
    visit(this.root, '');
    // In place, without a byte key per path: a million-file tree has no memory to spare.
    out.sort((a, b) => compareUtf8(a.path, b.path));
    return out;
  }
}

/**
 * Orders strings as their UTF-8 bytes would sort (code point order). UTF-16 code units
 * agree except that surrogates (U+D800-DFFF, code points above U+FFFF) must sort after
 * U+E000-FFFF; only the first differing unit needs that fix-up.
 */
export function compareUtf8(a: string, b: string): number {
  if (a === b) return 0;
  const length = Math.min(a.length, b.length);
  let i = 0;
  while (i < length && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  if (i === length) return a.length - b.length;
  const rank = (unit: number) => (unit >= 0xe000 ? unit - 0x800 : unit >= 0xd800 ? unit + 0x2000 : unit);
  return rank(a.charCodeAt(i)) - rank(b.charCodeAt(i));
}
