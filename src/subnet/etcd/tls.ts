// TLS to etcd: the client's files read and checked when the client is made
// (missing, not PEM, a key that is not the certificate's), and the handshake
// failures grpc-js reports turned into one line that names the file or the
// endpoint and the fix. grpc-js says (node 20, etcd 3.4 with
// --client-cert-auth):
//   CA that did not sign etcd's certificate: "unable to verify the first certificate"
//   client certificate refused (expired, unknown CA): "...alert bad certificate...SSL alert number 42"
//   no client certificate: the same alert (TLS 1.3 may say "certificate required")
//   http:// endpoint of a TLS etcd: "Failed to connect" (TCP connected, closed before HTTP/2)
//   key not the certificate's: "key values mismatch" (thrown when the channel is made)
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { WeftError } from '../../errors.js';

export interface EtcdTlsFiles {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

/** The files each endpoint's client was made with, for naming them in a failure. */
const filesByEndpoint = new Map<string, EtcdTlsFiles>();

function readFile(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new WeftError(`${flag} ${path} does not exist`, `create it or point ${flag} at the right file`);
    throw new WeftError(`cannot read ${flag} ${path} (${code ?? err})`, `make it readable by the agent or point ${flag} at the right file`);
  }
}

function certificate(pem: Buffer, path: string, flag: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch {
    throw new WeftError(`${flag} ${path} is not a PEM certificate`, `point ${flag} at a certificate ("-----BEGIN CERTIFICATE-----")`);
  }
}

/**
 * Reads the client's TLS files (undefined when none is given), checking what
 * can be checked without etcd; remembers them for `tlsFailure`.
 */
export function readTlsCredentials(endpoints: readonly string[], files: EtcdTlsFiles): { rootCertificate: Buffer; certChain?: Buffer; privateKey?: Buffer } | undefined {
  for (const e of endpoints) filesByEndpoint.set(e, files);
  const { caFile, certFile, keyFile } = files;
  if (!caFile && !certFile && !keyFile) return undefined;
  if (!certFile !== !keyFile) {
    throw new WeftError(`--etcd-${certFile ? 'certfile' : 'keyfile'} is given without --etcd-${certFile ? 'keyfile' : 'certfile'}`, 'pass both, the client certificate and its key');
  }
  const ca = caFile ? readFile(caFile, '--etcd-cafile') : undefined;
  if (ca) certificate(ca, caFile!, '--etcd-cafile');
  let cert: Buffer | undefined;
  let key: Buffer | undefined;
  if (certFile && keyFile) {
    cert = readFile(certFile, '--etcd-certfile');
    key = readFile(keyFile, '--etcd-keyfile');
    const x509 = certificate(cert, certFile, '--etcd-certfile');
    let matches: boolean;
    try {
      matches = x509.checkPrivateKey(createPrivateKey(key));
    } catch {
      throw new WeftError(`--etcd-keyfile ${keyFile} is not a PEM private key`, 'point --etcd-keyfile at the key of --etcd-certfile');
    }
    if (!matches) throw new WeftError(`--etcd-keyfile ${keyFile} is not the key of --etcd-certfile ${certFile}`, 'pass the key the certificate was issued for');
  }
  // etcd3 passes rootCertificate to grpc-js, where undefined means the system CAs.
  return { rootCertificate: ca as Buffer, ...(cert ? { certChain: cert } : {}), ...(key ? { privateKey: key } : {}) };
}

function certState(path: string): string | undefined {
  try {
    const x509 = new X509Certificate(readFileSync(path));
    const now = Date.now();
    if (Date.parse(x509.validTo) < now) return `it expired on ${new Date(x509.validTo).toISOString()}`;
    if (Date.parse(x509.validFrom) > now) return `it is valid only from ${new Date(x509.validFrom).toISOString()}`;
  } catch {
    // unreadable now: the next client creation says so
  }
  return undefined;
}

/**
 * One line (cause and fix) for a TLS failure talking to `endpoints`, or
 * undefined when `err` is not one.
 */
export function tlsFailure(err: unknown, endpoints: readonly string[], doing: string): { cause: string; fix: string } | undefined {
  const text = String(err instanceof Error ? err.message : err);
  const where = endpoints.join(',');
  const files = endpoints.map((e) => filesByEndpoint.get(e)).find(Boolean) ?? {};
  const at = `etcd at ${where}`;
  if (/key values mismatch/.test(text)) {
    return { cause: `--etcd-keyfile ${files.keyFile ?? '?'} is not the key of --etcd-certfile ${files.certFile ?? '?'}`, fix: 'pass the key the certificate was issued for' };
  }
  if (/unable to verify the first certificate|unable to get (local )?issuer certificate|self[- ]signed certificate|certificate signature failure/.test(text)) {
    const ca = files.caFile ? `the CA in --etcd-cafile ${files.caFile}` : 'the system CAs (no --etcd-cafile given)';
    return { cause: `${at} presented a certificate not signed by ${ca}, while ${doing}`, fix: "set --etcd-cafile to the CA that signed etcd's server certificate" };
  }
  if (/Hostname\/IP does not match certificate's altnames/.test(text)) {
    return { cause: `${at} presented a certificate that does not name that address, while ${doing}`, fix: "use an endpoint address listed in the certificate's subjectAltName, or reissue it" };
  }
  if (/certificate has expired/.test(text)) {
    return { cause: `${at} presented an expired server certificate, while ${doing}`, fix: "renew etcd's server certificate" };
  }
  if (/alert (bad certificate|certificate required|unknown ca|certificate expired|certificate unknown)/.test(text)) {
    if (!files.certFile) return { cause: `${at} requires a client certificate, while ${doing}`, fix: 'pass --etcd-certfile and --etcd-keyfile (a certificate from the CA in etcd\'s --trusted-ca-file)' };
    const state = certState(files.certFile);
    if (state) return { cause: `${at} refused the client certificate --etcd-certfile ${files.certFile}: ${state}`, fix: "issue a new one from etcd's CA and restart the agent" };
    return { cause: `${at} refused the client certificate --etcd-certfile ${files.certFile}, while ${doing}`, fix: "use a certificate issued by the CA in etcd's --trusted-ca-file" };
  }
  const plain = endpoints.filter((e) => e.startsWith('http://'));
  if (plain.length > 0 && !files.caFile && !files.certFile && /Last error: Failed to connect/.test(text)) {
    const https = plain.map((e) => e.replace(/^http:/, 'https:')).join(',');
    return { cause: `${at} closed the connection before gRPC started (an etcd serving TLS does that to a plaintext client), while ${doing}`, fix: `use ${https} in --etcd-endpoints with --etcd-cafile, --etcd-certfile and --etcd-keyfile` };
  }
  return undefined;
}
