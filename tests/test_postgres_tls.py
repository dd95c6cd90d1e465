"""TLS to PostgreSQL as docs/deployment.md says: ``sslmode=verify-full`` with the CA mounted, the URL read
from ``SPINECDS_DATABASE_URL_FILE``. A server whose certificate the CA did not sign is refused."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from support.gunicorn import spinecds_command
from support.private_pg import private_cluster
from support.tls import self_signed_certificate


def migrate_with_url_file(url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    secret = tmp_path / "database_url"
    secret.write_text(url + "\n")
    return subprocess.run(
        [*spinecds_command(), "migrate"],
        env={"PATH": "/usr/bin:/bin", "SPINECDS_DATABASE_URL_FILE": str(secret)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_verify_full_connects_with_the_ca_and_refuses_another(tmp_path: Path) -> None:
    with private_cluster() as pg:
        server_tls = pg.root / "tls"
        server_tls.mkdir()
        cert, key = self_signed_certificate(server_tls, "127.0.0.1")
        for path in (server_tls, cert, key):
            shutil.chown(path, "postgres", "postgres")
        key.chmod(0o600)
        pg.stop()
        pg.start(f"-c ssl=on -c ssl_cert_file={cert} -c ssl_key_file={key}")
        client = tmp_path / "client"
        client.mkdir()
        ca = client / "pg-ca.crt"
        shutil.copy(cert, ca)  # self-signed: the certificate is its own CA
        base = pg.url + "?sslmode=verify-full"

        good = migrate_with_url_file(f"{base}&sslrootcert={ca}", tmp_path)
        assert good.returncode == 0, good.stderr
        assert "postgresql+psycopg2 database schema" in good.stdout

        other, _ = self_signed_certificate(tmp_path, "127.0.0.1")  # a CA that did not sign the server's
        bad = migrate_with_url_file(f"{base}&sslrootcert={other}", tmp_path)
        assert bad.returncode == 1
        assert "certificate verify failed" in bad.stderr
