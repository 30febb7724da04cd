import signal

from sm_toolkit.errors import ConfigError
from sm_toolkit.runtime.failure import FAILURE_REASON_CHARS, run_main, write_failure
from sm_toolkit.runtime.signals import StopFlag


def test_failure_file_is_written_once(tmp_path):
    path = tmp_path / "output" / "failure"
    assert write_failure(path, "first")
    assert not write_failure(path, "second")
    assert path.read_text() == "first"


def test_user_error_is_one_line_and_exit_code_2(tmp_path, capsys):
    path = tmp_path / "failure"

    def main():
        raise ConfigError("lr", -1.0, "a number > 0")

    assert run_main(main, lambda: path) == 2
    text = path.read_text()
    assert text == "ConfigError: lr: -1.0 is not allowed; a number > 0"
    err = capsys.readouterr().err
    assert "Traceback" not in err and "lr: -1.0" in err


def test_framework_error_puts_the_cause_first_then_the_traceback(tmp_path, capsys):
    path = tmp_path / "failure"

    def inner():
        raise RuntimeError("CUDA out of memory " + "x" * 2000)

    assert run_main(inner, lambda: path) == 1
    text = path.read_text()
    assert text.startswith("RuntimeError: CUDA out of memory")
    assert "Traceback" in text and "in inner" in text
    assert "Traceback" in capsys.readouterr().err
    # the first 1,024 chars (what SageMaker shows) carry the cause
    assert "RuntimeError" in text[:FAILURE_REASON_CHARS]


def test_existing_failure_file_is_kept(tmp_path):
    path = tmp_path / "failure"
    path.write_text("written by the user script")
    assert run_main(lambda: 1 / 0, lambda: path) == 1
    assert path.read_text() == "written by the user script"


def test_success_returns_zero_and_writes_nothing(tmp_path):
    assert run_main(lambda: None, lambda: tmp_path / "failure") == 0
    assert not (tmp_path / "failure").exists()


def test_stop_flag_is_set_by_sigterm():
    flag = StopFlag().install((signal.SIGTERM,))
    try:
        assert not flag()
        signal.raise_signal(signal.SIGTERM)
        assert flag() and flag.signal_name == "SIGTERM"
    finally:
        flag.uninstall()
