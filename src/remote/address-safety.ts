/**
 * Which network addresses the registry client may connect to.
 *
 * kontain pulls from registries named by its users (`mirror/<any ref>`), so without a check
 * anyone could make it fetch from the machine's own loopback services, the private network
 * or the cloud metadata server. Every connection (registry, token realm, redirect target)
 * is checked here: the host name is resolved once, every address it resolves to must be
 * public, and the connection is then made to that checked address (pinned), so a second
 * DNS answer cannot swap in a private one (DNS rebinding). Hosts listed in the insecure
 * allowlist skip the check and are the only ones reached over plain HTTP.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { UpstreamError } from './errors.js';

export type AddressClass =
  | 'public'
  | 'loopback'
  | 'private'
  | 'link-local'
  | 'unspecified'
  | 'metadata'
  | 'multicast'
  | 'reserved';

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

export type LookupAll = (hostname: string) => Promise<ResolvedAddress[]>;

/** A connection target that was refused; thrown before any connection is attempted. */
export class UnsafeAddressError extends UpstreamError {
  override name = 'UnsafeAddressError';
  constructor(registry: string, message: string) {
    super({ registry, status: 0, code: 'ADDRESS_REFUSED', message });
  }
}

/** Names that reach a cloud metadata server without looking like an address. */
const METADATA_HOSTS = new Set(['metadata.google.internal', 'metadata']);
const METADATA_IPV4 = '169.254.169.254';

/** `KONTAIN_INSECURE_REGISTRIES`: comma-separated `host[:port]` entries. */
export function parseInsecureRegistries(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((entry) => entry.trim())
    .filter(Boolean);
}

/** Splits `host`, `host:port`, `[v6]` or `[v6]:port`; the hostname is lowercased, without brackets. */
export function splitHostPort(hostPort: string): { hostname: string; port?: number } {
  let hostname = hostPort;
  let port: string | undefined;
  if (hostPort.startsWith('[')) {
    const close = hostPort.indexOf(']');
    hostname = hostPort.slice(1, close);
    if (hostPort[close + 1] === ':') port = hostPort.slice(close + 2);
  } else {
    const colon = hostPort.lastIndexOf(':');
    // More than one colon without brackets: a bare IPv6 literal, no port.
    if (colon >= 0 && hostPort.indexOf(':') === colon) {
      hostname = hostPort.slice(0, colon);
      port = hostPort.slice(colon + 1);
    }
  }
  return { hostname: normaliseHostname(hostname), ...(port ? { port: Number(port) } : {}) };
}

function normaliseHostname(hostname: string): string {
  return hostname.toLowerCase().replace(/\.$/, '');
}

/** Classifies an IPv4 or IPv6 literal; throws if the text is not one. */
export function classifyAddress(ip: string): AddressClass {
  const bare = ip.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  const version = isIP(bare);
  if (version === 4) return classifyIPv4(parseIPv4(bare));
  if (version === 6) return classifyIPv6(parseIPv6(bare));
  throw new Error(`${JSON.stringify(ip)} is not an IP address`);
}

function parseIPv4(text: string): number {
  return text.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
}

function inV4(addr: number, base: string, bits: number): boolean {
  const size = 2 ** (32 - bits);
  return Math.floor(addr / size) === Math.floor(parseIPv4(base) / size);
}

function classifyIPv4(addr: number): AddressClass {
  if (inV4(addr, '0.0.0.0', 8)) return 'unspecified';
  if (inV4(addr, '127.0.0.0', 8)) return 'loopback';
  if (addr === parseIPv4(METADATA_IPV4)) return 'metadata';
  if (inV4(addr, '169.254.0.0', 16)) return 'link-local';
  if (inV4(addr, '10.0.0.0', 8) || inV4(addr, '172.16.0.0', 12) || inV4(addr, '192.168.0.0', 16)) return 'private';
  // Carrier-grade NAT space is not reachable from the internet either.
  if (inV4(addr, '100.64.0.0', 10)) return 'private';
  if (inV4(addr, '224.0.0.0', 4)) return 'multicast';
  if (inV4(addr, '240.0.0.0', 4)) return 'reserved';
  return 'public';
}

/** Eight 16-bit groups; `isIP` has already vouched for the syntax. */
function parseIPv6(text: string): number[] {
  let body = text;
  const tail: number[] = [];
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(body);
  if (dotted) {
    const v4 = parseIPv4(dotted[1]!);
    tail.push(Math.floor(v4 / 65536), v4 % 65536);
    body = body.slice(0, -dotted[1]!.length);
    if (body.endsWith(':') && !body.endsWith('::')) body = body.slice(0, -1);
  }
  const [head, rest] = body.includes('::') ? body.split('::') : [body, undefined];
  const groups = (s: string | undefined) => (s ? s.split(':').filter(Boolean).map((g) => parseInt(g, 16)) : []);
  const left = groups(head);
  const right = [...groups(rest), ...tail];
  const fill = rest === undefined ? [] : new Array<number>(8 - left.length - right.length).fill(0);
  return [...left, ...fill, ...right];
}

function classifyIPv6(g: number[]): AddressClass {
  const zeroUpTo = (n: number) => g.slice(0, n).every((x) => x === 0);
  const embeddedV4 = (hi: number, lo: number) => hi * 65536 + lo;
  if (zeroUpTo(8)) return 'unspecified';
  if (zeroUpTo(7) && g[7] === 1) return 'loopback';
  // IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) reach the embedded IPv4 address.
  if (zeroUpTo(5) && g[5] === 0xffff) return classifyIPv4(embeddedV4(g[6]!, g[7]!));
  if (g[0] === 0x64 && g[1] === 0xff9b && g.slice(2, 6).every((x) => x === 0)) return classifyIPv4(embeddedV4(g[6]!, g[7]!));
  // Deprecated IPv4-compatible ::a.b.c.d: never a legitimate registry.
  if (zeroUpTo(6)) return 'reserved';
  // 6to4 (2002:aabb:ccdd::/48) tunnels to the embedded IPv4 address.
  if (g[0] === 0x2002) {
    const inner = classifyIPv4(embeddedV4(g[1]!, g[2]!));
    if (inner !== 'public') return inner;
  }
  const first = g[0]!;
  if ((first & 0xfe00) === 0xfc00) return 'private'; // fc00::/7 unique local
  if ((first & 0xffc0) === 0xfe80) return 'link-local'; // fe80::/10
  if ((first & 0xffc0) === 0xfec0) return 'private'; // fec0::/10 old site-local
  if ((first & 0xff00) === 0xff00) return 'multicast';
  return 'public';
}

/** Whether `hostname[:port]` is on the allowlist (a bare host entry allows every port). */
export function isAllowlisted(allowlist: readonly string[], hostname: string, port: number): boolean {
  const host = normaliseHostname(hostname);
  return allowlist.some((entry) => {
    const e = splitHostPort(entry);
    return e.hostname === host && (e.port === undefined || e.port === port);
  });
}

const defaultLookup: LookupAll = async (hostname) => {
  const answers = await dnsLookup(hostname, { all: true, verbatim: true });
  return answers.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
};

export interface AddressPolicyOptions {
  /** `host[:port]` entries allowed to be private and reached over plain HTTP. */
  insecureRegistries: readonly string[];
  /** DNS resolution, replaceable in tests. */
  lookup?: LookupAll;
}

export class AddressPolicy {
  private readonly allowlist: readonly string[];
  private readonly lookup: LookupAll;

  constructor(options: AddressPolicyOptions) {
    this.allowlist = options.insecureRegistries;
    this.lookup = options.lookup ?? defaultLookup;
  }

  /** Allowlisted targets may be private and are spoken to over plain HTTP. */
  isInsecure(hostname: string, port: number): boolean {
    return isAllowlisted(this.allowlist, hostname, port);
  }

  /**
   * Resolves the host and returns the address to connect to, or throws UnsafeAddressError
   * when the host (or any address it resolves to) is not public and not allowlisted.
   * `registry` only names the upstream in the error.
   */
  async resolve(registry: string, hostname: string, port: number): Promise<ResolvedAddress> {
    const host = normaliseHostname(hostname);
    const allowed = this.isInsecure(host, port);
    const refuse = (why: string): never => {
      const display = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
      throw new UnsafeAddressError(
        registry,
        `refusing to connect to ${display} for registry ${registry}: ${why}; ` +
          `to allow it, add ${JSON.stringify(display)} to KONTAIN_INSECURE_REGISTRIES`,
      );
    };
    if (!allowed && METADATA_HOSTS.has(host)) refuse('it is a cloud metadata server');

    let addresses: ResolvedAddress[];
    const literal = isIP(host);
    if (literal) {
      addresses = [{ address: host, family: literal === 6 ? 6 : 4 }];
    } else {
      try {
        addresses = await this.lookup(host);
      } catch (err) {
        // A name that does not exist is not worth another try; a DNS server's hiccup is.
        const missing = ['ENOTFOUND', 'ENODATA'].includes((err as NodeJS.ErrnoException).code ?? '');
        throw new UpstreamError({
          registry,
          status: 0,
          code: missing ? 'UNRESOLVABLE' : 'UNREACHABLE',
          message: `cannot resolve ${host} for registry ${registry}: ${(err as Error).message}`,
          cause: err,
        });
      }
      if (addresses.length === 0) {
        throw new UpstreamError({ registry, status: 0, code: 'UNRESOLVABLE', message: `${host} has no addresses (registry ${registry})` });
      }
    }
    if (!allowed) {
      for (const { address } of addresses) {
        const kind = classifyAddress(address);
        if (kind !== 'public') refuse(literal ? `${address} is ${describe(kind)}` : `it resolves to ${address}, ${describe(kind)}`);
      }
    }
    return addresses[0]!;
  }
}

function describe(kind: AddressClass): string {
  const what: Record<Exclude<AddressClass, 'public'>, string> = {
    loopback: 'a loopback address',
    private: 'a private network address',
    'link-local': 'a link-local address',
    unspecified: 'an unspecified address',
    metadata: 'the cloud metadata server address',
    multicast: 'a multicast address',
    reserved: 'a reserved address',
  };
  return what[kind as Exclude<AddressClass, 'public'>];
}
