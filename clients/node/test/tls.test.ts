// The tls option against a server serving mutual TLS: a client with the CA and its own
// certificate is served; one without a certificate, or in plaintext, is not.
import { strict as assert } from "node:assert";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, before, test } from "node:test";
import { Client, status } from "../src";
import { Server, python } from "./support";

// a CA, a server certificate for 127.0.0.1 and a client certificate, with `cryptography` (a
// dependency of the server's dev install), as tests/test_server_tls.py makes them
const MAKE_CERTIFICATES = `
import datetime, ipaddress
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

def certificate(name, issuer_key=None, issuer_name=None, ca=False):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer_name or subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key, cert, cert.public_bytes(serialization.Encoding.PEM), pem_key

ca_key, ca_cert, ca_pem, _ = certificate("kamicore test CA", ca=True)
_, _, server_pem, server_key = certificate("localhost", ca_key, ca_cert.subject)
_, _, client_pem, client_key = certificate("node client", ca_key, ca_cert.subject)
for name, content in {"ca": ca_pem, "server": server_pem, "server_key": server_key,
                      "client": client_pem, "client_key": client_key}.items():
    open(name + ".pem", "wb").write(content)
`;

const folder = mkdtempSync(path.join(tmpdir(), "kamicore-node-pki-"));
const pem = (name: string) => readFileSync(path.join(folder, `${name}.pem`));
let server: Server;

before(async () => {
  python(["-c", MAKE_CERTIFICATES], folder);
  server = await new Server({
    settings: { tls_cert: path.join(folder, "server.pem"), tls_key: path.join(folder, "server_key.pem"),
      tls_client_ca: path.join(folder, "ca.pem") },
    clientOptions: { tls: { rootCerts: pem("ca"), certChain: pem("client"), privateKey: pem("client_key") } },
  }).start();
});

after(async () => {
  await server?.stop();
  rmSync(folder, { recursive: true, force: true });
});

test("a client with the server's CA and a client certificate is served over mTLS", async () => {
  const admin = server.client(server.adminKey);
  assert.deepEqual((await admin.listSkus()).skus, []);
});

test("without a client certificate, or in plaintext, nothing is served", async () => {
  for (const tls of [{ rootCerts: pem("ca") }, false]) {
    const client = new Client(server.address, server.adminKey, { tls });
    try {
      await assert.rejects(client.listSkus({}, { deadlineMs: 5_000 }),
        (error: { code: number }) => error.code === status.UNAVAILABLE);
    } finally {
      client.close();
    }
  }
});
