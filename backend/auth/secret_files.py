"""`python -m backend.auth.secret_files DIR SERVICE_DIR`: create each missing secret file, at random.

docker-compose.yml runs it once before the backend (the `secret-files` service) on two named
volumes: DIR holds the backend's own secrets, which only the backend mounts (read-only, at
/run/secrets, where its settings read files named after them: backend.config.SECRETS_DIR);
SERVICE_DIR holds the service accounts' passwords, which the backend (at
backend.config.SERVICE_SECRETS_DIR) and the service that signs in with each mount: the
retraining runner holds its own password and nothing else. A fresh clone's `docker compose up`
has strong secrets that survive restarts, none of them in an environment variable or in the
repository, and an existing file is never replaced: write your own into the volume (or mount
compose `secrets:` there) first. Read the first admin's password with
`docker compose exec backend cat /run/secrets/first_admin_password`.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

# name -> random bytes; token_urlsafe(32) is 43 characters of 256 random bits.
SECRETS: dict[str, int] = {"auth_token_secret": 32, "page_token_secret": 32, "first_admin_password": 18}
SERVICE_SECRETS: dict[str, int] = {"retrainer_password": 24}


def ensure_secret_files(directory: Path, secrets_: dict[str, int] = SECRETS) -> list[str]:
    """Create the missing files (mode 0600); the names of those created."""
    directory.mkdir(parents=True, exist_ok=True)
    created = []
    for name, n_bytes in secrets_.items():
        path = directory / name
        try:
            # O_EXCL: never overwrite, even if two runs race.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(n_bytes))
        created.append(name)
    return created


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m backend.auth.secret_files DIR SERVICE_DIR", file=sys.stderr)
        return 2
    for directory, wanted in zip(args, (SECRETS, SERVICE_SECRETS), strict=True):
        created = ensure_secret_files(Path(directory), wanted)
        kept = sorted(set(wanted) - set(created))
        made = ", ".join(created) or "none"
        print(f"secrets in {directory}: created {made}; kept {', '.join(kept) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
