"""UDP echo server for tests: sends back b"echo:" + each datagram. Usage: udp_echo.py HOST PORT"""

import socket
import sys

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    data, address = sock.recvfrom(65535)
    sock.sendto(b"echo:" + data, address)
