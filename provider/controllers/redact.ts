// What a line of a host's output may carry that must never reach a condition, an event or a log:
// kubeadm prints join commands with a bootstrap token and, for control planes, the certificate key
// that decrypts the uploaded CA keys; kubeconfigs carry base64 client keys; PEM blocks carry keys.
// A line is passed on with each of them replaced, and cut to a readable length.

/** A bootstrap token: [a-z0-9]{6}.[a-z0-9]{16} (kubeadm's format). */
const token = /\b[a-z0-9]{6}\.[a-z0-9]{16}\b/g;
/** kubeadm's --certificate-key, and any other 64-hex secret (a hash shown instead is no loss). */
const hex64 = /\b[0-9a-fA-F]{64}\b/g;
/** kubeconfig and Secret fields whose values are credentials. */
const credentialField =
  /\b(client-key-data|client-certificate-data|token|password|certificate-key|ca\.key|tls\.key)(["']?\s*[:=]\s*["']?)[^\s"',}]+/gi;
/** base64 of "-----BEGIN": PEM (keys, certificates) inside base64 data. */
const base64Pem = /LS0tLS1CRUdJT[A-Za-z0-9+/=]*/g;

export function redactLine(line: string): string {
  if (/PRIVATE KEY/.test(line)) return '[a line with key material, removed]';
  const clean = line
    .replace(credentialField, '$1$2[redacted]')
    .replace(base64Pem, '[base64 key material]')
    .replace(token, '[token]')
    .replace(hex64, '[key]');
  // A long error line says what failed at its start and why at its end ("connect: connection
  // refused"): keep both, at most 300 characters.
  return clean.length <= 300 ? clean : `${clean.slice(0, 180)} … ${clean.slice(-117)}`;
}
