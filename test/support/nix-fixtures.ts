/**
 * A Nix store, configuration and package set of the test's own, under one directory:
 * Debian's nix-bin builds offline as root with no build users and no sandbox, with the
 * store at <dir>/store (NIX_STORE_DIR), so store paths are `<dir>/store/<hash>-<name>`.
 * Derivations are `/bin/sh` scripts running busybox; there is no nixpkgs.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { exec } from './tools.js';

/** The environment Nix commands (and a server spawning them) need for this store. */
export async function nixEnvironment(dir: string): Promise<Record<string, string>> {
  const conf = path.join(dir, 'conf');
  await mkdir(conf, { recursive: true });
  await writeFile(
    path.join(conf, 'nix.conf'),
    ['build-users-group =', 'sandbox = false', 'substituters =', 'max-jobs = 4', 'experimental-features = nix-command flakes', ''].join('\n'),
  );
  return {
    NIX_CONF_DIR: conf,
    NIX_STORE_DIR: path.join(dir, 'store'),
    NIX_STATE_DIR: path.join(dir, 'state'),
    NIX_LOG_DIR: path.join(dir, 'log'),
    XDG_CACHE_HOME: path.join(dir, 'cache'),
  };
}

/** `mk name deps extra`: a package with bin/<name> printing its name, and its deps in `deps`. */
const MK = `mk = name: deps: extra: derivation {
    inherit name system;
    builder = "/bin/sh";
    args = [ "-c" ''
      B=/bin/busybox
      $B mkdir -p $out/bin
      printf '#!/bin/sh\\necho ${'${name}'}\\n' > $out/bin/${'${name}'}
      $B chmod +x $out/bin/${'${name}'}
      for d in ${'${toString deps}'}; do echo $d >> $out/deps; done
      ${'${extra}'}
    '' ];
  };`;

/**
 * The test package set: libc; hello and world on it; Nested.Tool; the packages of `shell`
 * (cacert with a CA bundle); big, whose closure is 150 store paths; slow, which takes two
 * seconds; broken, whose builder fails saying why.
 */
export async function writePackageSet(dir: string): Promise<string> {
  const file = path.join(dir, 'pkgs.nix');
  await writeFile(
    file,
    `let
  system = builtins.currentSystem;
  ${MK}
  libc = mk "libc" [ ] "echo libc-bytes > $out/libc.so";
  leaves = builtins.genList (i: mk "leaf\${toString i}" [ libc ] "") 148;
in {
  inherit libc;
  hello = mk "hello" [ libc ] "";
  world = mk "world" [ libc ] "";
  Nested = { Tool = mk "tool" [ ] ""; };
  bashInteractive = mk "bash" [ libc ] "";
  coreutils = mk "coreutils" [ libc ] "";
  moreutils = mk "moreutils" [ ] "";
  nano = mk "nano" [ ] "";
  iana-etc = mk "iana-etc" [ ] "";
  cacert = mk "cacert" [ ] "$B mkdir -p $out/etc/ssl/certs; echo bundle > $out/etc/ssl/certs/ca-bundle.crt";
  big = mk "big" leaves "";
  slow = mk "slow" [ ] "$B sleep 2";
  broken = derivation {
    name = "broken"; inherit system; builder = "/bin/sh";
    args = [ "-c" "echo 'widget.c:12: error: expected semicolon' >&2; exit 3" ];
  };
}
`,
  );
  return file;
}

/**
 * A flake in a git repository with branches main and v2, each output carrying the
 * branch's word: `greeting` prints it; `image` is a docker-archive tarball (as
 * dockerTools.buildImage writes) holding etc/greeting; `stream` is a script writing such a
 * tarball to stdout (as streamLayeredImage makes); `layers` is flakehub's layer
 * configuration (streamLayeredImageConf: store layers, a customisation layer, config).
 */
export async function writeFlakeRepository(dir: string): Promise<string> {
  const repo = path.join(dir, 'flake');
  await mkdir(repo, { recursive: true });
  const git = (...args: string[]) => exec('git', ['-C', repo, '-c', 'user.name=test', '-c', 'user.email=test@example.com', ...args]);
  await git('init', '-q', '-b', 'main');
  const flake = (word: string) => `{
  outputs = { self }: let
    system = "x86_64-linux";
    ${MK}
    greeting = mk "greeting" [ ] "echo ${word} > $out/word";
    # The parts of a docker save tarball: manifest.json, config.json, one layer.
    archive = derivation {
      name = "archive"; inherit system; builder = "/bin/sh";
      args = [ "-c" ''
        B=/bin/busybox
        $B mkdir -p root/etc $out/abc
        echo ${word} > root/etc/greeting
        (cd root && $B tar -cf $out/abc/layer.tar etc)
        echo '{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/greet"],"Env":["GREETING=${word}"]},"rootfs":{"type":"layers","diff_ids":[]}}' > $out/config.json
        echo '[{"Config":"config.json","RepoTags":["greet:latest"],"Layers":["abc/layer.tar"]}]' > $out/manifest.json
      '' ];
    };
    custom = derivation {
      name = "custom-customisation-layer"; inherit system; builder = "/bin/sh";
      args = [ "-c" ''
        B=/bin/busybox
        $B mkdir -p root/bin $out
        $B ln -s \${greeting}/bin/greeting root/bin/greeting
        (cd root && $B tar -cf $out/layer.tar bin)
        $B sha256sum $out/layer.tar | $B cut -d ' ' -f 1 > $out/checksum
      '' ];
    };
  in {
    packages.\${system} = {
      inherit greeting;
      image = derivation {
        name = "image.tar.gz"; inherit system; builder = "/bin/sh";
        args = [ "-c" "cd \${archive} && /bin/busybox tar -cf - manifest.json config.json abc | /bin/busybox gzip > $out" ];
      };
      stream = derivation {
        name = "stream-greet"; inherit system; builder = "/bin/sh";
        args = [ "-c" ''
          printf '#!/bin/sh\\ncd \${archive} && exec /bin/busybox tar -cf - manifest.json config.json abc\\n' > $out
          /bin/busybox chmod +x $out
        '' ];
      };
      layers = derivation {
        name = "greet-conf.json"; inherit system; builder = "/bin/sh";
        args = [ "-c" ''
          echo '{"architecture":"amd64","config":{"Cmd":["/bin/greeting"],"Env":["WORD=${word}"]},"os":"linux","store_dir":"/nix/store","from_image":null,"store_layers":[["\${greeting}"]],"customisation_layer":"\${custom}","repo_tag":"greet:x","created":"1970-01-01T00:00:01+00:00"}' > $out
        '' ];
      };
    };
  };
}
`;
  await writeFile(path.join(repo, 'flake.nix'), flake('hello-main'));
  await git('add', 'flake.nix');
  await git('commit', '-q', '-m', 'main');
  await git('checkout', '-q', '-b', 'v2');
  await writeFile(path.join(repo, 'flake.nix'), flake('hello-v2'));
  await git('commit', '-q', '-am', 'v2');
  await git('checkout', '-q', 'main');
  return repo;
}

/**
 * The test package set in a git repository (default.nix) at two commits: tag v1, where
 * hello has no version file, then main, where hello's version file says 2.
 */
export async function writePackageSetRepository(dir: string): Promise<{ repo: string; v1: string; main: string }> {
  const repo = path.join(dir, 'pkgs-repo');
  await mkdir(repo, { recursive: true });
  const git = (...args: string[]) => exec('git', ['-C', repo, '-c', 'user.name=test', '-c', 'user.email=test@example.com', ...args]);
  await git('init', '-q', '-b', 'main');
  const set = await readFile(await writePackageSet(dir), 'utf8');
  await writeFile(path.join(repo, 'default.nix'), set);
  await git('add', 'default.nix');
  await git('commit', '-q', '-m', 'v1');
  await git('tag', 'v1');
  await writeFile(path.join(repo, 'default.nix'), set.replace('hello = mk "hello" [ libc ] "";', 'hello = mk "hello" [ libc ] "echo 2 > $out/version";'));
  await git('commit', '-q', '-am', 'hello 2');
  const rev = async (name: string) => (await git('rev-parse', name)).stdout.trim();
  return { repo, v1: await rev('v1'), main: await rev('main') };
}

/**
 * Wrappers for the Nix commands in `<dir>/bin` that append their name to `<dir>/nix-calls`
 * and run the real one: put the directory first on PATH to count Nix processes.
 */
export async function writeNixCounters(dir: string): Promise<{ bin: string; calls: () => Promise<number> }> {
  const bin = path.join(dir, 'bin');
  const log = path.join(dir, 'nix-calls');
  await mkdir(bin, { recursive: true });
  for (const name of ['nix', 'nix-build', 'nix-instantiate', 'nix-store']) {
    const real = (await exec('sh', ['-c', `command -v ${name}`])).stdout.trim();
    await writeFile(path.join(bin, name), `#!/bin/sh\necho ${name} >> '${log}'\nexec '${real}' "$@"\n`, { mode: 0o755 });
  }
  return {
    bin,
    calls: async () => (await readFile(log, 'utf8').catch(() => '')).split('\n').filter(Boolean).length,
  };
}
