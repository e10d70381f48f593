"""The checks no single variable shows: credentials set in halves, a session token without keys,
a DLQ that is the main queue, and an ``AWS_PROFILE`` that no AWS config file defines (read from
the files only: no network, no credential resolution). Their problems are reported together
with those of the values themselves.
"""

from __future__ import annotations

from collections.abc import Mapping

from goraxfast.config.settings import SECRET_MASK
from goraxfast.errors import ConfigProblem


def _set(env: Mapping[str, str], name: str) -> bool:
    return bool(env.get(name, "").strip())


def environment_problems(env: Mapping[str, str]) -> list[ConfigProblem]:
    """What no single variable shows: credentials set in halves, a session token with no keys,
    a DLQ that is the main queue, a profile no AWS config file defines."""
    problems: list[ConfigProblem] = []
    key, secret = _set(env, "AWS_ACCESS_KEY_ID"), _set(env, "AWS_SECRET_ACCESS_KEY")
    if key != secret:
        missing, given = (
            ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
            if key
            else ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        )
        problems.append(
            ConfigProblem(
                missing,
                env.get(missing, ""),
                f"required when {given} is set: set both for static credentials, "
                "or neither for the default AWS credential chain",
            )
        )
    if _set(env, "AWS_SESSION_TOKEN") and not key and not secret:
        problems.append(
            ConfigProblem(
                "AWS_SESSION_TOKEN",
                SECRET_MASK,
                "used only with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, which are unset",
            )
        )
    queue, dlq = env.get("AWS_SQS_QUEUE_URL", "").strip(), env.get("AWS_SQS_DLQ_URL", "").strip()
    if dlq and dlq == queue:
        problems.append(
            ConfigProblem(
                "AWS_SQS_DLQ_URL",
                env["AWS_SQS_DLQ_URL"],
                "a queue other than AWS_SQS_QUEUE_URL (dead letters must leave the main queue)",
            )
        )
    problem = profile_problem(env)
    if problem is not None:
        problems.append(problem)
    return problems


def profile_problem(env: Mapping[str, str]) -> ConfigProblem | None:
    """An ``AWS_PROFILE`` (or ``AWS_DEFAULT_PROFILE``, which botocore reads first) that neither
    the config file nor the credentials file defines: botocore would fail on the first call.

    Reads the two files only (``AWS_CONFIG_FILE``, ``AWS_SHARED_CREDENTIALS_FILE`` or their
    defaults under ``~/.aws``): no network, no credential resolution.
    """
    name = next((n for n in ("AWS_DEFAULT_PROFILE", "AWS_PROFILE") if _set(env, n)), None)
    if name is None:
        return None
    profile = env[name].strip()
    if profile == "default":  # botocore accepts "default" with no file at all
        return None
    import botocore.exceptions
    import botocore.session

    session = botocore.session.Session()
    config_file = env.get("AWS_CONFIG_FILE", "").strip() or "~/.aws/config"
    credentials_file = env.get("AWS_SHARED_CREDENTIALS_FILE", "").strip() or "~/.aws/credentials"
    session.set_config_variable("config_file", config_file)
    session.set_config_variable("credentials_file", credentials_file)
    try:
        known = sorted(session.available_profiles)
    except botocore.exceptions.BotoCoreError as exc:  # a file that does not parse
        return ConfigProblem(name, env[name], f"a profile of readable AWS config files ({exc})")
    if profile in known:
        return None
    listed = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
    return ConfigProblem(
        name,
        env[name],
        f"a profile defined in {config_file} or {credentials_file}"
        + (f" (they define: {listed})" if known else " (they define none)"),
    )
