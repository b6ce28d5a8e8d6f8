// The HTTP source of a preparation bundle (bundle.source: HTTP, docs/hosts.md), pure: which URLs a
// host tries for a file and in what order, the shell a host downloads with (curl, GNU wget or
// busybox wget, whichever it has) and what goes on its stdin, and the redaction that keeps
// credentials in a URL (https://user:pass@...) out of every message. URLs and the proxy travel on
// stdin, never on a command line (ps shows command lines to every user of the host).
import { shQuote } from '../../common/quote.ts';

export interface HttpSource {
  /** Base URL of a bundle folder: <url>/manifest.json, <url>/files/<path>. */
  url: string;
  /** Further base URLs, tried in order when one fails. */
  mirrors?: string[];
  /** An http proxy the host's downloads go through. */
  proxy?: string;
  /** sha256 of manifest.json: pins the bundle. */
  sha256: string;
}

/** A bundle the host downloads, for the Machine's Kubernetes version. */
export interface HttpBundle {
  http: HttpSource;
  version: string;
}

/** What the host downloads with: curl, GNU wget, busybox's wget applet (`busybox wget`, or a `wget` that is busybox). */
export type Downloader = 'curl' | 'gnu-wget' | 'busybox' | 'wget';
const downloaders: readonly Downloader[] = ['curl', 'gnu-wget', 'busybox', 'wget'];

/** Read-only; prints `downloader=<Downloader>` for the first one the host has, nothing when none. */
export const downloaderProbeScript = `if command -v curl >/dev/null 2>&1; then echo downloader=curl
elif command -v wget >/dev/null 2>&1 && wget --version 2>/dev/null | grep -q 'GNU Wget'; then echo downloader=gnu-wget
elif command -v busybox >/dev/null 2>&1 && busybox wget --help >/dev/null 2>&1; then echo downloader=busybox
elif command -v wget >/dev/null 2>&1; then echo downloader=wget
fi
true`;

export function parseDownloader(out: string): Downloader | undefined {
  const d = /^downloader=(\S+)$/m.exec(out)?.[1];
  return downloaders.find((x) => x === d);
}

/** The base URLs in the order they are tried: the one that served last first, then the others in order. */
export function baseOrder(src: Pick<HttpSource, 'url' | 'mirrors'>, preferred?: string): string[] {
  const all = [...new Set([src.url, ...(src.mirrors ?? [])].map((u) => u.replace(/\/+$/, '')))];
  return preferred && all.includes(preferred) ? [preferred, ...all.filter((u) => u !== preferred)] : all;
}

/** <base>/manifest.json or <base>/files/<path> (the bundle folder hack/bundle builds). */
export const urlOf = (base: string, path?: string): string =>
  path === undefined ? `${base}/manifest.json` : `${base}/files${path.split('/').map(encodeURIComponent).join('/')}`;

const decoded = (s: string): string => {
  try {
    return decodeURIComponent(s);
  } catch {
    return s; // not percent-encoded after all
  }
};

/** The userinfo of each URL that has one, and its password: text that must never be shown (a tool may print the password alone). */
export function secretsOf(urls: Array<string | undefined>): string[] {
  return urls.flatMap((u) => {
    const info = u ? /^[a-z][a-z0-9+.-]*:\/\/([^/?#@]*)@/i.exec(u)?.[1] : undefined;
    if (!info) return [];
    const password = info.includes(':') ? info.slice(info.indexOf(':') + 1) : '';
    return password.length > 2 ? [info, password, decoded(password)] : [info];
  });
}

/** text without any URL's userinfo (user:password@ -> ***@), nor any of the given secrets. */
export function redact(text: string, secrets: string[] = []): string {
  let out = text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/?#@\s]*@/gi, '$1***@');
  for (const s of [...secrets].sort((a, b) => b.length - a.length)) out = out.replaceAll(s, '***');
  return out;
}

/** busybox wget takes the URL on its command line: a URL with credentials is not given to it. */
export const argvOnly = (d: Downloader) => d === 'busybox' || d === 'wget';

const curlQuote = (s: string) => `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;

/** What the download command reads on its stdin: curl's config (-K -), or the proxy and URL lines. */
export function downloadStdin(d: Downloader, url: string, proxy?: string): string {
  if (d === 'curl') return `url = ${curlQuote(url)}\n${proxy ? `proxy = ${curlQuote(proxy)}\n` : ''}`;
  return `${proxy ?? ''}\n${url}\n`;
}

/** The command that downloads to `out` ("-": stdout) whatever downloadStdin names; curl stops after maxSeconds. */
function command(d: Downloader, out: string, maxSeconds: number): string {
  const o = shQuote(out);
  if (d === 'curl')
    return `curl -K - --fail --silent --show-error --location --connect-timeout 15 --max-time ${maxSeconds} -o ${o}`;
  // wget reads the proxy from the environment: the first line of stdin, set by the shell's read.
  const proxy = 'IFS= read -r p; [ -n "$p" ] && export http_proxy="$p" https_proxy="$p"; ';
  if (d === 'gnu-wget') return `${proxy}wget -nv -t 1 -T 30 -i - -O ${o}`;
  const wget = d === 'busybox' ? 'busybox wget' : 'wget';
  // No -T: busybox 1.35's wget crashes with it (SIGSEGV); the caller's timeout bounds the download.
  return `${proxy}IFS= read -r u; ${wget} -q -O ${o} "$u"`;
}

/** Prints the document at the URL on stdout. */
export const fetchToStdoutScript = (d: Downloader): string => `set -u\n${command(d, '-', 60)}`;

/** Downloads the URL to `dest` (0600, through dest.part, removed when the download fails). */
export function downloadScript(d: Downloader, dest: string, maxSeconds = 600): string {
  const part = shQuote(`${dest}.part`);
  return `set -u
umask 077
mkdir -p ${shQuote(dest.slice(0, dest.lastIndexOf('/')) || '/')} || exit 1
rm -f ${part}
if ${command(d, `${dest}.part`, maxSeconds)}; then mv -f ${part} ${shQuote(dest)}; else rc=$?; rm -f ${part}; exit $rc; fi`;
}

export interface Attempt {
  url: string;
  error: string;
}

/** BundleUnavailable's message: every URL tried and its error, credentials redacted. */
export function unavailableMessage(what: string, src: HttpSource, tries: Attempt[]): string {
  const secrets = secretsOf([src.url, ...(src.mirrors ?? []), src.proxy]);
  const list = tries.map((a) => `${a.url}: ${a.error.trim().split('\n').slice(-2).join(' ') || 'failed'}`);
  const via = src.proxy ? ` through the proxy ${src.proxy}` : '';
  return redact(
    `The host could not download ${what}${via}: ${list.join('; ')}. Check that the bundle folder is served at these URLs and reachable from the host (a firewall, the proxy), or add a mirror.`,
    secrets,
  );
}
