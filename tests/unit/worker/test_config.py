"""Worker settings: flags win over JOBPOOL_* variables; errors name the flag or variable."""

from __future__ import annotations

import pytest

from jobpool.cli import build_parser
from jobpool.queue import Job
from jobpool.worker.config import SETTINGS, ConfigError, flag_reference, resolve_config
from jobpool.worker.runners import HandlerError, JobFailed, load_callable
from jobpool.worker.runtime import error_text, lost_job_error, reconnect_delay
from tests.helpers import ROOT

BASE_ENV = {
    "JOBPOOL_QUEUE_URL": "redis://q:6379/0",
    "JOBPOOL_POOL": "thumbs",
    "JOBPOOL_HANDLER": "app.tasks:resize",
}


def resolve(flags=None, env=None):
    return resolve_config(flags or {}, env if env is not None else BASE_ENV, default_id=lambda: "host-1")


def test_environment_alone_configures_a_worker_with_the_documented_defaults():
    config = resolve()
    assert (config.queue_url, config.namespace, config.pool, config.handler) == (
        "redis://q:6379/0",
        "default",
        "thumbs",
        "app.tasks:resize",
    )
    assert (
        config.concurrency,
        config.max_attempts,
        config.backoff,
        config.max_backoff,
        config.drain_seconds,
        config.metrics_port,
        config.timeout,
    ) == (1, 3, 1.0, 300.0, 60.0, 9100, 0.0)
    assert config.worker_id == "host-1"
    assert config.heartbeat_interval == config.visibility_timeout / 3


def test_a_flag_wins_over_its_variable():
    env = dict(BASE_ENV, JOBPOOL_CONCURRENCY="4", JOBPOOL_WORKER_ID="pod-7", JOBPOOL_MAX_ATTEMPTS="5")
    config = resolve({"concurrency": "8"}, env)
    assert (config.concurrency, config.worker_id, config.max_attempts) == (8, "pod-7", 5)


def test_command_comes_from_json_in_the_environment():
    env = {k: v for k, v in BASE_ENV.items() if k != "JOBPOOL_HANDLER"}
    config = resolve(env=dict(env, JOBPOOL_COMMAND='["/app/resize", "--fast"]'))
    assert config.command == ("/app/resize", "--fast") and config.handler is None


@pytest.mark.parametrize(
    "flags, env_extra, message",
    [
        ({"concurrency": "0"}, {}, "--concurrency '0': must be >= 1"),
        ({}, {"JOBPOOL_CONCURRENCY": "many"}, "JOBPOOL_CONCURRENCY='many'"),
        ({}, {"JOBPOOL_TIMEOUT": "-1"}, "JOBPOOL_TIMEOUT='-1': must be a number >= 0"),
        ({"metrics_port": "70000"}, {}, "--metrics-port '70000'"),
        ({}, {"JOBPOOL_COMMAND": '"/bin/x"'}, "JOBPOOL_COMMAND"),
        ({"command": ["/bin/x"]}, {}, "exactly one of --handler"),
        ({"heartbeat_interval": "40"}, {}, "--heartbeat-interval must be shorter"),
        ({"worker_id": "released"}, {}, "--worker-id 'released' is reserved"),
    ],
)
def test_bad_settings_name_the_flag_or_variable(flags, env_extra, message):
    with pytest.raises(ConfigError) as caught:
        resolve(flags, dict(BASE_ENV, **env_extra))
    assert message in str(caught.value)


def test_missing_queue_or_pool_names_both_spellings():
    with pytest.raises(ConfigError, match=r"missing --queue \(or JOBPOOL_QUEUE_URL\)"):
        resolve(env={"JOBPOOL_POOL": "p", "JOBPOOL_HANDLER": "m:f"})
    with pytest.raises(ConfigError, match=r"missing --pool \(or JOBPOOL_POOL\)"):
        resolve(env={"JOBPOOL_QUEUE_URL": "redis://q", "JOBPOOL_HANDLER": "m:f"})


def test_reconnect_delay_grows_and_is_capped():
    delays = [reconnect_delay(n) for n in range(1, 12)]
    assert delays[0] == 0.25 and delays == sorted(delays) and max(delays) == 10


def test_a_job_delivered_more_often_than_allowed_is_reported_lost():
    job = Job("j", None, attempts=4, enqueued_at=0, token="1-0")
    assert "delivered 4 times" in lost_job_error(job, 3)
    assert lost_job_error(job, 4) is None


def test_error_text_starts_with_the_exception_line():
    try:
        raise KeyError("size")
    except KeyError as exc:
        text = error_text(exc)
    assert text.startswith("KeyError: 'size'\n") and "Traceback" in text
    assert error_text(JobFailed("command exited with status 2: x")) == "command exited with status 2: x"


def test_handlers_that_cannot_be_loaded_are_named():
    with pytest.raises(HandlerError, match="cannot import 'no_such_module'"):
        load_callable("no_such_module:run")
    with pytest.raises(HandlerError, match="has no attribute 'nope'"):
        load_callable("json:nope")
    assert load_callable("json:dumps")([1]) == "[1]"


def test_the_result_ttl_defaults_to_a_day_and_comes_from_the_flag_or_the_variable():
    assert resolve().result_ttl == 86400.0
    assert resolve(env=dict(BASE_ENV, JOBPOOL_RESULT_TTL="600")).result_ttl == 600.0
    assert resolve({"result_ttl": "60"}, dict(BASE_ENV, JOBPOOL_RESULT_TTL="600")).result_ttl == 60


@pytest.mark.parametrize("value", ["0", "-5", "soon", "inf"])
def test_a_result_ttl_that_is_not_a_positive_number_is_refused_naming_its_variable(value):
    with pytest.raises(ConfigError, match=rf"^JOBPOOL_RESULT_TTL='{value}': "):
        resolve(env=dict(BASE_ENV, JOBPOOL_RESULT_TTL=value))


@pytest.mark.parametrize(
    "variable, value", [("JOBPOOL_POOL", "bad pool name!"), ("JOBPOOL_NAMESPACE", "Media")]
)
def test_a_pool_or_namespace_that_is_no_dns_label_is_refused(variable, value):
    with pytest.raises(ConfigError) as caught:
        resolve(env=dict(BASE_ENV, **{variable: value}))
    flag = "--pool" if variable == "JOBPOOL_POOL" else "--namespace"
    assert str(caught.value).startswith(
        f"{flag} (or {variable}): {flag[2:]} {value!r} is not a DNS-1123 label"
    )


def test_the_readme_shows_the_flag_table():
    readme = (ROOT / "README.md").read_text()
    assert flag_reference() in readme, "README.md's worker flag table differs; paste:\n" + flag_reference()


@pytest.mark.parametrize("name", [n for n in SETTINGS if n != "command"])
def test_every_worker_flag_reaches_its_setting(name):
    assert getattr(build_parser().parse_args(["worker", SETTINGS[name].flag, "7"]), name) == "7"


def test_worker_help_names_every_variable(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["worker", "--help"])
    help_text = capsys.readouterr().out
    assert [s.variable for s in SETTINGS.values() if s.variable not in help_text] == []


def test_the_handler_format_is_the_crds():
    for handler in ("app.", "app tasks:f", "a:b:c", "1app:f"):
        with pytest.raises(
            ConfigError, match=r"--handler \(or JOBPOOL_HANDLER\): .* is not a Python callable"
        ):
            resolve(env={**BASE_ENV, "JOBPOOL_HANDLER": handler})
        with pytest.raises(HandlerError, match="is not a Python callable module:function"):
            load_callable(handler)
    assert (
        resolve(env={**BASE_ENV, "JOBPOOL_HANDLER": "pkg.mod:Class.method"}).handler == "pkg.mod:Class.method"
    )


def test_a_jobs_own_options_are_held_to_the_pools_caps():
    from jobpool.queue import JobOptions

    config = resolve(
        env={
            **BASE_ENV,
            "JOBPOOL_TIMEOUT": "60",
            "JOBPOOL_MAX_ATTEMPTS": "3",
            "JOBPOOL_BACKOFF": "2",
            "JOBPOOL_MAX_BACKOFF": "30",
            "JOBPOOL_MAX_JOB_TIMEOUT": "300",
            "JOBPOOL_MAX_JOB_ATTEMPTS": "10",
        }
    )
    assert config.job_settings(JobOptions()) == (60, 3, 2)
    assert config.job_settings(JobOptions(timeout=5, max_attempts=1, backoff=0)) == (5, 1, 0)
    assert config.job_settings(JobOptions(timeout=9999, max_attempts=99, backoff=99)) == (300, 10, 30)
