// users and groups, as cloud-init's cc_users_groups does on Debian/Ubuntu: create what is missing,
// add group members, sudo rules in /etc/sudoers.d/90-cloud-init-users, authorized keys, and lock
// the password unless lock_passwd is false. An existing user is left as it is but for sudo and keys.
//
// Every change is also written to a ledger ($CAPBM_LEDGER, one record a line) so that a reset can
// undo exactly it: the users and groups it created, the sudo rules and authorized keys it added (to
// an existing user too, e.g. root). A reused host does not keep the last cluster's admins.
//   user <name> | group <name> | file <path> | sudoers <path> <name> | key <name> <base64 key line>
//   lock <name>: the password of a user that existed was locked (the reset unlocks it again)
import { InvalidCloudConfig } from './errors.ts';
import { shQuote } from '../common/quote.ts';

export interface User {
  name: string;
  gecos?: string;
  homedir?: string;
  shell?: string;
  primaryGroup?: string;
  groups: string[];
  sudo: string[];
  sshAuthorizedKeys: string[];
  lockPasswd: boolean;
  passwd?: string;
  system: boolean;
  noCreateHome: boolean;
  uid?: number;
}

export interface Group {
  name: string;
  members: string[];
}

const namePattern = /^[a-z_][a-z0-9_.-]*\$?$/i;

function nameOf(v: unknown, at: string): string {
  if (typeof v !== 'string' || !namePattern.test(v))
    throw new InvalidCloudConfig(at, `"${String(v)}" is not a valid user or group name`);
  return v;
}

function list(v: unknown, at: string): string[] {
  if (v === undefined || v === null || v === false) return [];
  if (typeof v === 'string')
    return v
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  if (Array.isArray(v))
    return v.map((x, i) => {
      if (typeof x !== 'string') throw new InvalidCloudConfig(`${at}[${i}]`, 'must be a string');
      return x;
    });
  throw new InvalidCloudConfig(at, 'must be a string or a list of strings');
}

function readUser(u: unknown, at: string, warn: (w: string) => void): User | undefined {
  if (u === 'default') {
    warn(`${at}: the distribution's "default" user is not created: bare-metal hosts have their own users`);
    return undefined;
  }
  if (typeof u === 'string') return readUser({ name: u }, at, warn);
  if (!u || typeof u !== 'object' || Array.isArray(u))
    throw new InvalidCloudConfig(at, 'a user is a name or a mapping');
  const o = u as Record<string, unknown>;
  const sudo = o.sudo === false || o.sudo === null || o.sudo === undefined ? [] : list(o.sudo, `${at}.sudo`);
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
  return {
    name: nameOf(o.name, `${at}.name`),
    gecos: str(o.gecos),
    homedir: str(o.homedir),
    shell: str(o.shell),
    primaryGroup: o.primary_group === undefined ? undefined : nameOf(o.primary_group, `${at}.primary_group`),
    groups: list(o.groups, `${at}.groups`).map((g, i) => nameOf(g, `${at}.groups[${i}]`)),
    sudo,
    sshAuthorizedKeys: list(o.ssh_authorized_keys, `${at}.ssh_authorized_keys`),
    lockPasswd: o.lock_passwd !== false,
    passwd: str(o.passwd),
    system: o.system === true,
    noCreateHome: o.no_create_home === true,
    uid: typeof o.uid === 'number' ? o.uid : undefined,
  };
}

export function readUsers(value: unknown, warn: (w: string) => void): User[] {
  if (value === undefined || value === null) return [];
  const items = Array.isArray(value)
    ? value
    : typeof value === 'string'
      ? value.split(',').map((s) => s.trim())
      : undefined;
  if (!items) throw new InvalidCloudConfig('users', 'must be a list');
  return items.map((u, i) => readUser(u, `users[${i}]`, warn)).filter((u): u is User => !!u);
}

export function readGroups(value: unknown): Group[] {
  if (value === undefined || value === null) return [];
  const items: unknown[] = Array.isArray(value)
    ? value
    : typeof value === 'string'
      ? value.split(',').map((s) => s.trim())
      : [value];
  return items.flatMap((g, i): Group[] => {
    if (typeof g === 'string') return [{ name: nameOf(g, `groups[${i}]`), members: [] }];
    if (g && typeof g === 'object' && !Array.isArray(g)) {
      return Object.entries(g as Record<string, unknown>).map(([name, members]) => ({
        name: nameOf(name, `groups[${i}]`),
        members: list(members, `groups[${i}].${name}`).map((m, j) => nameOf(m, `groups[${i}].${name}[${j}]`)),
      }));
    }
    throw new InvalidCloudConfig(`groups[${i}]`, 'a group is a name or a mapping of name to members');
  });
}

/** Creates a group if missing, and records it. */
const groupadd1 = (g: string) =>
  `getent group ${shQuote(g)} >/dev/null || { groupadd ${shQuote(g)} && echo ${shQuote(`group ${g}`)} >> "$CAPBM_LEDGER"; }`;

export function groupsBody(groups: Group[]): string {
  return groups
    .flatMap((g) => [
      groupadd1(g.name),
      ...g.members.map(
        (m) => `if getent passwd ${shQuote(m)} >/dev/null; then usermod -a -G ${shQuote(g.name)} ${shQuote(m)}; fi`,
      ),
    ])
    .join('\n');
}

function useraddArgs(u: User): string[] {
  const a: string[] = [];
  if (u.gecos) a.push('--comment', u.gecos);
  if (u.homedir) a.push('--home-dir', u.homedir);
  if (u.shell) a.push('--shell', u.shell);
  if (u.primaryGroup) a.push('--gid', u.primaryGroup);
  if (u.groups.length) a.push('--groups', u.groups.join(','));
  if (u.uid !== undefined) a.push('--uid', String(u.uid));
  if (u.system) a.push('--system');
  a.push(u.noCreateHome ? '--no-create-home' : '--create-home');
  return a;
}

/** The shell body for one user. `sudoers` is the sudoers.d file path (root-prefixed in tests). */
export function userBody(u: User, sudoers: string): string {
  const n = shQuote(u.name);
  const lines = [
    ...u.groups.map(groupadd1),
    'existed=1',
    `if ! getent passwd ${n} >/dev/null; then useradd ${useraddArgs(u).map(shQuote).join(' ')} ${n} && echo ${shQuote(`user ${u.name}`)} >> "$CAPBM_LEDGER"; existed=; fi`,
  ];
  if (u.passwd) lines.push(`usermod --password ${shQuote(u.passwd)} ${n}`);
  if (u.lockPasswd) {
    lines.push(
      // Locked as sshd sees it: a password field starting with "!" ("*" alone still allows keys).
      `case "$(getent shadow ${n} | cut -d: -f2)" in '!'*) ;; *) [ -n "$existed" ] && echo ${shQuote(`lock ${u.name}`)} >> "$CAPBM_LEDGER" ;; esac`,
      `passwd -l ${n} >/dev/null`,
    );
  }
  if (u.sudo.length) {
    const rules = [`# User rules for ${u.name}`, ...u.sudo.map((r) => `${u.name} ${r}`)].join('\n');
    const f = shQuote(sudoers);
    lines.push(
      `mkdir -p "$(dirname ${f})"`,
      `[ -e ${f} ] || echo ${shQuote(`file ${sudoers}`)} >> "$CAPBM_LEDGER"`,
      `grep -qxF ${shQuote(`# User rules for ${u.name}`)} ${f} 2>/dev/null || { printf '\\n%s\\n' ${shQuote(rules)} >> ${f} && echo ${shQuote(`sudoers ${sudoers} ${u.name}`)} >> "$CAPBM_LEDGER"; }`,
      `chmod 0440 ${f}`,
    );
  }
  if (u.sshAuthorizedKeys.length) {
    lines.push(
      `home=$(getent passwd ${n} | cut -d: -f6)`,
      `mkdir -p "$home/.ssh" && chmod 700 "$home/.ssh"`,
      `touch "$home/.ssh/authorized_keys" && chmod 600 "$home/.ssh/authorized_keys"`,
      ...u.sshAuthorizedKeys.map(
        (k) =>
          `grep -qxF ${shQuote(k)} "$home/.ssh/authorized_keys" || { printf '%s\\n' ${shQuote(k)} >> "$home/.ssh/authorized_keys" && echo ${shQuote(`key ${u.name} ${Buffer.from(k).toString('base64')}`)} >> "$CAPBM_LEDGER"; }`,
      ),
      `chown -R ${n}: "$home/.ssh"`,
    );
  }
  return lines.join('\n');
}
