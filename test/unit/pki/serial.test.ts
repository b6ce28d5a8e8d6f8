import test from 'ava';
import forge from 'node-forge';
import { randomSerial, createCertificateAuthority } from '../../../provider/pki/certificate.ts';

// Go's crypto/x509 (the CAPI controllers, kubelet, kube-apiserver) refuses a serial whose DER
// INTEGER is not minimal: a leading 0x00 before a byte below 0x80, or a negative number.
function minimalPositive(hex: string): boolean {
  const first = parseInt(hex.slice(0, 2), 16);
  const second = parseInt(hex.slice(2, 4), 16);
  if (first >= 0x80) return false; // negative
  return !(first === 0 && second < 0x80); // non-minimal
}

test('property: every serial is a positive, minimally encoded 16-byte INTEGER', (t) => {
  for (let i = 0; i < 20_000; i++) {
    const s = randomSerial();
    t.is(s.length, 32);
    if (!minimalPositive(s)) t.fail(`serial ${s} would be refused by Go as malformed`);
  }
  t.pass();
});

test('a certificate carries the serial as written (node-forge does not re-pad it)', async (t) => {
  const ca = await createCertificateAuthority('serial-test');
  const cert = forge.pki.certificateFromPem(ca.certPem);
  t.true(minimalPositive(cert.serialNumber));
  t.is(cert.serialNumber.length, 32);
});
