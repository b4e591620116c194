"""Stopping the receiver: SIGTERM closes the port at once, lets open associations finish,
and exits 0."""

import signal
import time

from .peers import AE_TITLE, client


def test_it_exits_promptly_on_sigterm_when_idle(embedded_site):
    receiver = embedded_site.start_receiver()

    started = time.monotonic()
    receiver.popen.send_signal(signal.SIGTERM)

    assert receiver.popen.wait(timeout=5) == 0
    assert time.monotonic() - started < 5
    assert "DICOM receiver stopped (0 associations aborted)" in receiver.output()


def test_it_lets_an_open_association_finish_then_exits(embedded_site):
    receiver = embedded_site.start_receiver()
    assoc = client().associate("127.0.0.1", embedded_site.port, ae_title=AE_TITLE)
    assert assoc.is_established

    receiver.popen.send_signal(signal.SIGTERM)
    receiver.wait_for_output("stopping", timeout=5)

    assert assoc.send_c_echo().Status == 0x0000  # still served during the grace period
    late = client().associate("127.0.0.1", embedded_site.port, ae_title=AE_TITLE)
    assert not late.is_established  # the port is closed
    assoc.release()
    assert receiver.popen.wait(timeout=5) == 0


def test_it_aborts_what_outlives_the_grace_period(embedded_site):
    receiver = embedded_site.start_receiver(LIGHTBOX_DICOM_SHUTDOWN_GRACE="1")
    assoc = client().associate("127.0.0.1", embedded_site.port, ae_title=AE_TITLE)
    assert assoc.is_established

    receiver.popen.send_signal(signal.SIGTERM)

    assert receiver.popen.wait(timeout=10) == 0
    assert "(1 associations aborted)" in receiver.output()
    time.sleep(0.5)
    assert assoc.is_aborted
