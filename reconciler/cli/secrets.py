"""``samops keys`` and ``samops secrets``: API keys as digests, secret values sealed to the
daemon's key. Nothing here reads or writes the database."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from reconciler import apikeys, sealing
from reconciler.cli.common import dump_yaml, env_option, fail, output_option, resource_name
from reconciler.errors import SealingError
from reconciler.seal_files import seal_file


@click.group()
def keys() -> None:
    """Create API keys (SmarterAuthToken) and digests; keys never go into git.

    \b
    Example:
      samops keys create support-bot-key > new-key.txt
    """


@keys.command("create")
@click.argument("name")
@click.option(
    "--algorithm",
    type=click.Choice(["sha256", "sha512"]),
    default="sha256",
    show_default=True,
    help="Digest algorithm written in the manifest.",
)
@click.option("--username", help="Informational owner of the key.")
@click.option(
    "--expires-at",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    help="Date (UTC) after which the key is refused.",
)
@click.option("--description", help="metadata.description of the manifest.")
@output_option(
    ["text", "json"],
    "text",
    'text: the key on the first line, then the manifest; json: {"key": ..., "manifest": ...}.',
)
def keys_create(
    name: str,
    algorithm: str,
    username: str | None,
    expires_at: dt.datetime | None,
    description: str | None,
    output_format: str,
) -> None:
    """Generate a new API key NAME: print the key once, then its manifest.

    The manifest holds only the key's digest; commit it, and hand the key to the client. The
    key cannot be shown again. To rotate without downtime, add the new key's digest to the
    existing manifest's spec.config.digest list, deploy, then remove the old digest.

    \b
    Examples:
      samops keys create support-bot-key > new-key.txt   # line 1: the key; then the manifest
      samops keys create support-bot-key -o json
    """
    name = resource_name(name)
    key = apikeys.generate_key()
    manifest = apikeys.token_manifest(
        name,
        [apikeys.digest_of(key, algorithm)],  # type: ignore[arg-type]
        description=description,
        username=username,
        expires_at=expires_at.replace(tzinfo=dt.UTC).isoformat() if expires_at else None,
    )
    if output_format == "json":
        click.echo(json.dumps({"key": key, "manifest": manifest}, indent=2))
    else:
        click.echo(key)
        click.echo(dump_yaml(manifest), nl=False)
    if sys.stderr.isatty():
        click.echo("note: the key is shown only once; store it now.", err=True)


@keys.command("digest")
@click.option(
    "--algorithm", type=click.Choice(["sha256", "sha512"]), default="sha256", show_default=True
)
def keys_digest(algorithm: str) -> None:
    """Print the digest of a key read from standard input (for rotation and checks).

    \b
    Example:
      head -n 1 new-key.txt | samops keys digest
    """
    key = sys.stdin.read().strip()
    if not key:
        fail("no key on standard input")
    click.echo(apikeys.digest_of(key, algorithm))  # type: ignore[arg-type]


@click.group()
def secrets() -> None:
    """Seal secret values so they can be committed; only the daemon's key opens them.

    \b
    Example:
      samops secrets keygen --out samops-private.key > pk.txt
    """


@secrets.command("keygen")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="File to write the private key to (mode 0600; never overwritten).",
)
def secrets_keygen(out: Path) -> None:
    """Create the daemon's key pair: the private key goes to --out, the public key to stdout.

    Give the private key file to the daemon (SAMOPS_SECRETS_PRIVATE_KEY_FILE) and the public
    key to whoever seals secrets (SAMOPS_SECRETS_PUBLIC_KEY); it may be committed.

    \b
    Example:
      samops secrets keygen --out samops-private.key > pk.txt
    """
    public, private = sealing.generate_keypair()
    try:
        descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        fail(f"{out} exists; refusing to overwrite a private key")
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror}")
    with os.fdopen(descriptor, "w") as handle:
        handle.write(private + "\n")
    click.echo(public)


def public_key_options(command: Any) -> Any:
    """--public-key / --public-key-file (or SAMOPS_SECRETS_PUBLIC_KEY): what seals a value."""
    command = click.option(
        "--public-key-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Read the public key from this file instead.",
    )(command)
    return env_option(
        "--public-key",
        envvar="SAMOPS_SECRETS_PUBLIC_KEY",
        help="The daemon's public key (samops-pk1:...).",
    )(command)


def _public_key(given: str | None, file: Path | None) -> str:
    key = file.read_text().strip() if file is not None else given
    if not key:
        raise click.UsageError("give --public-key, --public-key-file or SAMOPS_SECRETS_PUBLIC_KEY")
    return key


@secrets.command("encrypt")
@click.argument("name")
@public_key_options
@click.option("--description", help="metadata.description of the manifest.")
def secrets_encrypt(
    name: str, public_key: str | None, public_key_file: Path | None, description: str | None
) -> None:
    """Read a value from standard input and print a Secret NAME holding it sealed.

    The value is encrypted to the daemon's public key and bound to NAME; only the daemon's
    private key opens it. One trailing newline of the input is dropped.

    \b
    Example:
      printf %s "$DB_PASSWORD" | samops secrets encrypt db-password --public-key-file pk.txt
    """
    name = resource_name(name)
    public_key = _public_key(public_key, public_key_file)
    stdin = sys.stdin
    value = (
        click.prompt("Secret value", hide_input=True, err=True)
        if stdin.isatty()
        else stdin.read().removesuffix("\n")
    )
    if not value:
        fail("the secret value is empty")
    try:
        manifest = sealing.sealed_secret_manifest(
            name, value, public_key=public_key, description=description
        )
    except SealingError as exc:
        fail(str(exc))
    click.echo(dump_yaml(manifest), nl=False)


@secrets.command("seal")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@public_key_options
def secrets_seal(
    files: tuple[Path, ...], public_key: str | None, public_key_file: Path | None
) -> None:
    """Rewrite plaintext Secret manifests in FILES in place, their values sealed.

    Each Secret's spec.config.value becomes spec.config.encryptedValue, sealed to the daemon's
    public key and bound to the Secret's name (as 'secrets encrypt' does); comments and every
    other line stay as they were. Files without a plaintext Secret are left alone. The values
    stay in the repository's history: rotate them if it was ever shared.

    \b
    Examples:
      samops secrets seal manifests/secrets/*.yaml --public-key-file pk.txt
      grep -l "kind: Secret" -r manifests | xargs samops secrets seal --public-key-file pk.txt

    Exit codes: 0 done (or nothing to seal); 1 a file could not be read, parsed or written
    (files before it are sealed; it and those after are unchanged).
    """
    public_key = _public_key(public_key, public_key_file)
    total = 0
    for path in files:
        try:
            sealed = seal_file(path, public_key)
        except SealingError as exc:
            fail(str(exc))
        for secret in sealed:
            click.echo(f"{path}:{secret.line}: sealed Secret {secret.name!r}")
        total += len(sealed)
    if total:
        click.echo(
            f"{total} secret(s) sealed; commit the files (the old values stay in git history)"
        )
    else:
        click.echo("no plaintext Secret value found; nothing changed")
