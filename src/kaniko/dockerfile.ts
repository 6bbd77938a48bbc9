/**
 * The parts of a Dockerfile kontain reads before building: the images it pulls (`FROM`,
 * and `COPY --from=<image>`), so each can be resolved to a digest through kontain's own
 * registry client (address policy, credentials) and pinned. The pinned Dockerfile is what
 * gets built, and the digests go into the cache key: a base that moves means a rebuild,
 * and a build always uses exactly the base its key names.
 *
 * Hand-written because no maintained npm parser of Dockerfiles tracks BuildKit's grammar;
 * only what finding image references needs is parsed (continuations, comments, the
 * escape directive, global ARG defaults, stage names).
 */

export interface ParsedDockerfile {
  /** Distinct external images, in order of first use. */
  images: string[];
  /** The Dockerfile with each external image replaced by `pin(reference)`. */
  pinned(pin: (reference: string) => string): string;
}

export class DockerfileInvalid extends Error {
  override name = 'DockerfileInvalid';
}

interface Instruction {
  /** Index of the first physical line and the count of lines it spans. */
  first: number;
  count: number;
  keyword: string;
  text: string;
}

/** Finds the external images a Dockerfile uses. */
export function parseDockerfile(source: string): ParsedDockerfile {
  const lines = source.split('\n');
  const escape = escapeChar(lines);
  const instructions = joinInstructions(lines, escape);
  const args = new Map<string, string>();
  const stages = new Set<string>();
  const edits: Array<{ instruction: Instruction; rewrite: (pin: (reference: string) => string) => string }> = [];
  const images: string[] = [];
  const use = (reference: string) => {
    if (!images.includes(reference)) images.push(reference);
  };
  let seenFrom = false;
  for (const instruction of instructions) {
    const { keyword, text } = instruction;
    if (keyword === 'ARG' && !seenFrom) {
      for (const word of text.split(/\s+/).filter(Boolean)) {
        const eq = word.indexOf('=');
        if (eq < 0) args.set(word, args.get(word) ?? '');
        else args.set(word.slice(0, eq), unquote(word.slice(eq + 1)));
      }
    } else if (keyword === 'FROM') {
      seenFrom = true;
      const words = text.split(/\s+/).filter(Boolean);
      const flags = words.filter((w) => w.startsWith('--'));
      const rest = words.filter((w) => !w.startsWith('--'));
      if (rest.length !== 1 && !(rest.length === 3 && rest[1]!.toLowerCase() === 'as')) {
        throw new DockerfileInvalid(`FROM ${text}: expected FROM [--platform=…] image [AS name]`);
      }
      const reference = expand(rest[0]!, args);
      if (reference === '') throw new DockerfileInvalid(`FROM ${text}: the image is empty after ARG expansion`);
      const external = reference.toLowerCase() !== 'scratch' && !stages.has(reference.toLowerCase());
      if (rest.length === 3) stages.add(rest[2]!.toLowerCase());
      if (!external) continue;
      use(reference);
      edits.push({ instruction, rewrite: (pin) => ['FROM', ...flags, pin(reference), ...rest.slice(1)].join(' ') });
    } else if (keyword === 'COPY') {
      const from = /(^|\s)--from=(\S+)/.exec(text);
      if (!from) continue;
      const value = expand(from[2]!, args);
      if (/^\d+$/.test(value) || stages.has(value.toLowerCase())) continue;
      use(value);
      edits.push({ instruction, rewrite: (pin) => `COPY ${text.replace(/(^|\s)--from=\S+/, `$1--from=${pin(value)}`)}` });
    }
  }
  if (!seenFrom) throw new DockerfileInvalid('the Dockerfile has no FROM instruction');
  return {
    images,
    pinned(pin) {
      const out = [...lines];
      for (const { instruction, rewrite } of edits) {
        out[instruction.first] = rewrite(pin);
        for (let i = 1; i < instruction.count; i++) out[instruction.first + i] = '';
      }
      return out.join('\n');
    },
  };
}

/** `# escape=\`` among the leading parser directives; `\` otherwise. */
function escapeChar(lines: string[]): string {
  for (const line of lines) {
    const directive = /^\s*#\s*([a-z]+)\s*=\s*(\S+)\s*$/i.exec(line);
    if (!directive) break;
    if (directive[1]!.toLowerCase() === 'escape' && (directive[2] === '`' || directive[2] === '\\')) return directive[2];
  }
  return '\\';
}

function joinInstructions(lines: string[], escape: string): Instruction[] {
  const out: Instruction[] = [];
  let current: { first: number; parts: string[] } | undefined;
  lines.forEach((raw, index) => {
    const line = raw.replace(/\r$/, '');
    if (!current && (/^\s*#/.test(line) || line.trim() === '')) return;
    // Comment lines inside a continued instruction are dropped, as docker does.
    if (current && /^\s*#/.test(line)) {
      current.parts.push('');
      return;
    }
    const continued = line.trimEnd().endsWith(escape);
    const body = continued ? line.trimEnd().slice(0, -1) : line;
    if (!current) current = { first: index, parts: [] };
    current.parts.push(body);
    if (!continued) {
      const text = current.parts.join(' ').trim();
      const match = /^(\S+)\s*(.*)$/.exec(text)!;
      out.push({ first: current.first, count: index - current.first + 1, keyword: match[1]!.toUpperCase(), text: match[2]!.trim() });
      current = undefined;
    }
  });
  return out;
}

/** `$NAME`, `${NAME}`, `${NAME:-default}`, `${NAME:+alt}` from the global ARG defaults. */
function expand(word: string, args: Map<string, string>): string {
  return unquote(word).replace(/\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g, (_all, braced?: string, op?: string, operand?: string, bare?: string) => {
    const value = args.get((braced ?? bare)!) ?? '';
    if (op === '-') return value || (operand ?? '');
    if (op === '+') return value ? (operand ?? '') : '';
    return value;
  });
}

function unquote(value: string): string {
  return /^"(.*)"$|^'(.*)'$/.test(value) ? value.slice(1, -1) : value;
}
