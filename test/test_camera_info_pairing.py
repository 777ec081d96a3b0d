"""CameraInfoPairing: each image gets the camera_info with its stamp, else the newest one."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from mono_depth_ros.camera_info_pairing import MATCHES_BEFORE_WAITING, CameraInfoPairing, header_stamp


def stamp(index: int):
    return (1_700_000_000 + index // 10, (index % 10) * 100_000_000)


def info(index: int) -> str:
    return f"info {index}"


def paired_stream(**kwargs) -> CameraInfoPairing:
    """A pairing that has seen enough images with their own camera_info to wait for the next one."""
    pairing = CameraInfoPairing(**kwargs)
    for index in range(MATCHES_BEFORE_WAITING):
        pairing.add(stamp(index), info(index))
        assert pairing.info_for(stamp(index)) == info(index)
    assert pairing.waits
    return pairing


def add_later(pairing: CameraInfoPairing, delay_s: float, index: int) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(delay_s), pairing.add(stamp(index), info(index))))
    thread.start()
    return thread


def test_header_stamp_is_sec_and_nanosec():
    msg = SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=12, nanosec=345)))
    assert header_stamp(msg) == (12, 345)


def test_nothing_before_the_first_camera_info():
    assert CameraInfoPairing().info_for(stamp(0)) is None


def test_own_stamp_wins_over_a_newer_camera_info():
    pairing = CameraInfoPairing()
    pairing.add(stamp(1), info(1))
    pairing.add(stamp(2), info(2))
    assert pairing.info_for(stamp(1)) == info(1)
    assert pairing.newest == info(2)


def test_other_stamps_get_the_newest():
    pairing = CameraInfoPairing()
    pairing.add(stamp(1), info(1))
    pairing.add(stamp(2), info(2))
    assert pairing.info_for(stamp(7)) == info(2)


def test_only_the_last_few_are_kept():
    pairing = CameraInfoPairing(history=3)
    for index in range(5):
        pairing.add(stamp(index), info(index))
    assert pairing.info_for(stamp(1)) == info(4)  # evicted: newest instead
    assert pairing.info_for(stamp(2)) == info(2)
    with pytest.raises(ValueError, match="history must be at least 1"):
        CameraInfoPairing(history=0)


def test_an_image_of_a_pairing_stream_waits_for_its_own_camera_info():
    pairing = paired_stream(wait_s=30.0)
    # Driver order: the image first, its camera_info a moment later.
    thread = add_later(pairing, 0.05, 10)
    assert pairing.info_for(stamp(10)) == info(10)
    thread.join()
    assert pairing.waits


def test_camera_info_arriving_after_its_image_teaches_the_pairing_to_wait():
    pairing = CameraInfoPairing(wait_s=30.0)
    pairing.add(stamp(0), info(0))
    for index in range(1, 1 + MATCHES_BEFORE_WAITING):
        assert not pairing.waits
        assert pairing.info_for(stamp(index)) == info(index - 1)  # not here yet: the previous one
        pairing.add(stamp(index), info(index))  # then it comes, with the image's stamp
    assert pairing.waits
    thread = add_later(pairing, 0.05, 9)
    assert pairing.info_for(stamp(9)) == info(9)  # now it waits for its own
    thread.join()


def test_a_camera_info_every_few_frames_never_makes_images_wait():
    # A driver that publishes camera_info with every 4th image: matches now and then, never in a row.
    pairing = CameraInfoPairing(wait_s=30.0)
    for index in range(40):
        if index % 4 == 0:
            pairing.add(stamp(index), info(index))
        assert not pairing.waits
        assert pairing.info_for(stamp(index)) == info(index - index % 4)


def test_camera_info_with_other_stamps_never_makes_images_wait():
    pairing = CameraInfoPairing(wait_s=30.0)
    for index in range(10):
        pairing.add(stamp(1000 + index), info(index))  # stamped by another clock
        assert pairing.info_for(stamp(index)) == info(index)
        assert not pairing.waits


def test_a_camera_info_that_stops_coming_costs_one_wait_then_none():
    pairing = paired_stream(wait_s=0.05)
    newest = pairing.newest
    assert pairing.info_for(stamp(10)) == newest  # waited 0.05 s, then the newest
    assert not pairing.waits
    assert pairing.info_for(stamp(11)) == newest


def test_close_wakes_a_waiting_image_and_stops_waiting():
    pairing = paired_stream(wait_s=300.0)
    answer = []
    thread = threading.Thread(target=lambda: answer.append(pairing.info_for(stamp(10))))
    thread.start()
    time.sleep(0.05)
    pairing.close()
    thread.join(timeout=10.0)
    assert not thread.is_alive(), "close() did not wake info_for"
    assert answer == [info(MATCHES_BEFORE_WAITING - 1)]
    assert not pairing.waits
