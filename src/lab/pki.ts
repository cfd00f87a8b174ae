// The lab's TLS material for etcd, made at run time with Debian's openssl:
// a CA, a server certificate for the etcd members, a client certificate for
// the agents, and the bad variants the TLS tests feed an agent (a CA that
// signed nothing here, an expired client certificate, a key that does not
// match the client certificate). ECDSA P-256 keys: made in milliseconds.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runCommand } from './command.js';

export interface LabPki {
  dir: string;
  /** The CA that signed the server and client certificates. */
  caFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
  /** A CA unrelated to anything here (a client trusting it refuses the server). */
  otherCaFile: string;
  /** A client certificate signed by the right CA whose validity ended in 2020. */
  expiredCertFile: string;
  /** Its key (matching it). */
  expiredKeyFile: string;
  /** A valid key that belongs to no certificate here. */
  strayKeyFile: string;
}

/** The file names under the pki dir; the e2e tests and `weft lab down` find them by it. */
export function labPkiFiles(dir: string): LabPki {
  const f = (name: string) => join(dir, name);
  return {
    dir,
    caFile: f('ca.crt'),
    serverCertFile: f('server.crt'),
    serverKeyFile: f('server.key'),
    clientCertFile: f('client.crt'),
    clientKeyFile: f('client.key'),
    otherCaFile: f('other-ca.crt'),
    expiredCertFile: f('expired.crt'),
    expiredKeyFile: f('expired.key'),
    strayKeyFile: f('stray.key'),
  };
}

async function openssl(args: string[], cwd: string): Promise<void> {
  await runCommand(['openssl', ...args.map((a) => (a.startsWith('@') ? join(cwd, a.slice(1)) : a))]);
}

async function newKey(dir: string, name: string): Promise<void> {
  await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `@${name}`], dir);
}

async function selfSignedCa(dir: string, name: string, cn: string): Promise<void> {
  await newKey(dir, `${name}.key`);
  await openssl(['req', '-x509', '-new', '-key', `@${name}.key`, '-subj', `/CN=${cn}`, '-days', '30', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', `@${name}.crt`], dir);
}

/** Signs `name`.csr with the CA (ca.crt/ca.key) for `days`, with the extensions in `name`.ext. */
async function sign(dir: string, name: string, ext: string, days = 30): Promise<void> {
  await writeFile(join(dir, `${name}.ext`), ext);
  await openssl(['x509', '-req', '-in', `@${name}.csr`, '-CA', '@ca.crt', '-CAkey', '@ca.key', '-CAcreateserial', '-days', String(days), '-extfile', `@${name}.ext`, '-out', `@${name}.crt`], dir);
}

async function csr(dir: string, name: string, cn: string): Promise<void> {
  await newKey(dir, `${name}.key`);
  await openssl(['req', '-new', '-key', `@${name}.key`, '-subj', `/CN=${cn}`, '-out', `@${name}.csr`], dir);
}

const CLIENT_EXT = 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n';

/**
 * Makes the lab's PKI in `dir`: the server certificate names every address in
 * `serverIPs` (and 127.0.0.1) as a SAN. openssl 3.0's `x509 -req` cannot set
 * a start date in the past, so the expired certificate is issued by
 * `openssl ca` with -startdate/-enddate in 2020 (a throwaway CA database).
 */
export async function makeLabPki(dir: string, serverIPs: readonly string[]): Promise<LabPki> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const files = labPkiFiles(dir);
  await Promise.all([selfSignedCa(dir, 'ca', 'weft lab etcd CA'), selfSignedCa(dir, 'other-ca', 'unrelated CA'), csr(dir, 'server', 'etcd'), csr(dir, 'client', 'weft-agent'), csr(dir, 'expired', 'weft-agent'), newKey(dir, 'stray.key')]);
  const sans = [...new Set([...serverIPs, '127.0.0.1'])].map((ip) => `IP:${ip}`).join(',');
  await sign(dir, 'server', `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=${sans}\n`);
  await sign(dir, 'client', CLIENT_EXT);
  // openssl ca: a config with the bare minimum, a database of its own.
  const caDir = join(dir, 'ca-db');
  await mkdir(join(caDir, 'new'), { recursive: true });
  await writeFile(join(caDir, 'index.txt'), '');
  await writeFile(join(caDir, 'serial'), '1000\n');
  await writeFile(join(dir, 'expired.ext'), CLIENT_EXT);
  await writeFile(
    join(caDir, 'ca.cnf'),
    [
      '[ca]',
      'default_ca = lab',
      '[lab]',
      `database = ${join(caDir, 'index.txt')}`,
      `serial = ${join(caDir, 'serial')}`,
      `new_certs_dir = ${join(caDir, 'new')}`,
      'default_md = sha256',
      'policy = any',
      'unique_subject = no',
      'copy_extensions = none',
      '[any]',
      'commonName = supplied',
      '',
    ].join('\n'),
  );
  await openssl(['ca', '-batch', '-notext', '-config', join(caDir, 'ca.cnf'), '-cert', '@ca.crt', '-keyfile', '@ca.key', '-startdate', '20200101000000Z', '-enddate', '20200102000000Z', '-extfile', '@expired.ext', '-in', '@expired.csr', '-out', '@expired.crt'], dir);
  return files;
}
