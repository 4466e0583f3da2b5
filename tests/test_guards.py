"""The offline guard itself: a test that reaches the network or runs wget must fail."""

from __future__ import annotations

import os
import socket
import subprocess
import urllib.request

import pytest

from conftest import NetworkAccessError


def test_outside_connection_is_refused():
    with pytest.raises(NetworkAccessError):
        urllib.request.urlopen("http://example.com/", timeout=2)


def test_raw_socket_to_outside_is_refused():
    with pytest.raises(NetworkAccessError):
        socket.create_connection(("93.184.215.14", 80), timeout=2)


def test_wget_is_refused():
    with pytest.raises(NetworkAccessError):
        os.system('wget -O /tmp/x "http://storage.googleapis.com/x.csv"')
    with pytest.raises(NetworkAccessError):
        subprocess.run(["wget", "http://example.com/"])


def test_loopback_is_allowed():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname(), timeout=2)
    client.close()
    server.close()
