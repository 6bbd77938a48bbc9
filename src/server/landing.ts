import type { Host } from '../generators/generator.js';

/** How a pull command names a host's image, in host form or path form. */
export function pullReference(generator: Host, example: string, domain: string, requestHost: string): string {
  // Examples are written `service/repo:tag`; in host form the service moves into the host.
  if (domain) return `${generator.service}.${domain}/${example.slice(generator.service.length + 1)}`;
  return `${requestHost}/${example}`;
}

function escapeHTML(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function section(generator: Host, domain: string, requestHost: string): string {
  const commands = generator.examples
    .map((example) => `<pre>docker pull ${escapeHTML(pullReference(generator, example, domain, requestHost))}</pre>`)
    .join('\n');
  const title = generator.pageURL ? `<a href="${escapeHTML(generator.pageURL)}">${escapeHTML(generator.service)}</a>` : escapeHTML(generator.service);
  const link = generator.pageURL ? `<p><a href="${escapeHTML(generator.pageURL)}">Open the ${escapeHTML(generator.service)} page</a></p>` : '';
  return `<section><h2>${title}</h2><p>${escapeHTML(generator.summary)}</p>${link}${commands}</section>`;
}

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHTML(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem;line-height:1.5}
pre{background:#f4f4f4;padding:.5rem;overflow-x:auto}</style></head>
<body>${body}</body></html>
`;
}

/** The page at `/` of one host. */
export function serviceLandingPage(generator: Host, domain: string, requestHost: string): string {
  return page(`kontain: ${generator.service}`, `<h1>kontain: ${escapeHTML(generator.service)}</h1>\n${section(generator, domain, requestHost)}`);
}

/** The page at `/` of the bare domain (or localhost): every host. */
export function indexLandingPage(generators: Iterable<Host>, domain: string, requestHost: string): string {
  const sections = [...generators].map((g) => section(g, domain, requestHost)).join('\n');
  return page(
    'kontain',
    `<h1>kontain</h1><p>A container registry that makes images at the moment they are pulled. Each host makes a different kind of image.</p>\n${sections}`,
  );
}
