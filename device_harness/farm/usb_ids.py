"""USB vendor/product IDs of the debug probes, boards and USB-serial bridges a TinyML bench has.

Used by ``tinyfarm farm discover`` to pick, among all serial ports, the ones worth a HELLO. A
``None`` product matches every product of the vendor. IDs are those the devices enumerate with
(the same values udev rules and pyOCD/probe-rs tables use).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KnownUsb:
    vid: int
    pid: int | None
    name: str
    kind: str  # probe (debug probe with a virtual COM port) | board (native USB) | bridge


KNOWN_USB: tuple[KnownUsb, ...] = (
    # ST
    KnownUsb(0x0483, 0x3748, "ST-LINK/V2", "probe"),
    KnownUsb(0x0483, 0x374B, "ST-LINK/V2-1 (Nucleo/Discovery)", "probe"),
    KnownUsb(0x0483, 0x3752, "ST-LINK/V2-1", "probe"),
    KnownUsb(0x0483, 0x374E, "STLINK-V3", "probe"),
    KnownUsb(0x0483, 0x374F, "STLINK-V3", "probe"),
    KnownUsb(0x0483, 0x3753, "STLINK-V3", "probe"),
    KnownUsb(0x0483, 0x3754, "STLINK-V3", "probe"),
    KnownUsb(0x0483, 0x5740, "STM32 USB CDC (native USB)", "board"),
    # SEGGER J-Link (also on Nordic DKs), every product
    KnownUsb(0x1366, None, "SEGGER J-Link", "probe"),
    # Arm Mbed DAPLink / CMSIS-DAP
    KnownUsb(0x0D28, 0x0204, "DAPLink CMSIS-DAP (Arm Mbed)", "probe"),
    KnownUsb(0x1FC9, 0x0090, "NXP LPC-Link2 CMSIS-DAP", "probe"),
    KnownUsb(0x1FC9, 0x0143, "NXP MCU-Link CMSIS-DAP", "probe"),
    KnownUsb(0x0451, 0xBEF3, "TI XDS110", "probe"),
    KnownUsb(0x03EB, 0x2111, "Microchip EDBG CMSIS-DAP", "probe"),
    KnownUsb(0x03EB, 0x2175, "Microchip nEDBG CMSIS-DAP", "probe"),
    KnownUsb(0x1D50, 0x6018, "Black Magic Probe", "probe"),
    # Nordic
    KnownUsb(0x1915, None, "Nordic Semiconductor (nRF USB)", "board"),
    # Raspberry Pi
    KnownUsb(0x2E8A, 0x000C, "Raspberry Pi Debug Probe (CMSIS-DAP)", "probe"),
    KnownUsb(0x2E8A, 0x000A, "Raspberry Pi Pico (SDK USB stdio)", "board"),
    KnownUsb(0x2E8A, 0x0005, "Raspberry Pi Pico (MicroPython)", "board"),
    KnownUsb(0x2E8A, None, "Raspberry Pi RP2040/RP2350 device", "board"),
    # Espressif
    KnownUsb(0x303A, 0x1001, "Espressif USB-Serial/JTAG (ESP32-S3/C3/C6)", "board"),
    KnownUsb(0x303A, None, "Espressif USB device", "board"),
    # Boards with their own USB
    KnownUsb(0x2341, None, "Arduino", "board"),
    KnownUsb(0x239A, None, "Adafruit", "board"),
    KnownUsb(0x16C0, 0x0483, "Teensy (USB serial)", "board"),
    KnownUsb(0x2FE3, 0x0100, "Zephyr CDC ACM sample", "board"),
    # USB-serial bridges (on dev boards or as cables)
    KnownUsb(0x0403, 0x6001, "FTDI FT232R", "bridge"),
    KnownUsb(0x0403, 0x6010, "FTDI FT2232", "bridge"),
    KnownUsb(0x0403, 0x6011, "FTDI FT4232", "bridge"),
    KnownUsb(0x0403, 0x6014, "FTDI FT232H", "bridge"),
    KnownUsb(0x0403, 0x6015, "FTDI FT-X", "bridge"),
    KnownUsb(0x10C4, 0xEA60, "Silicon Labs CP210x", "bridge"),
    KnownUsb(0x10C4, 0xEA70, "Silicon Labs CP2105", "bridge"),
    KnownUsb(0x1A86, 0x7523, "WCH CH340", "bridge"),
    KnownUsb(0x1A86, 0x5523, "WCH CH341", "bridge"),
    KnownUsb(0x1A86, 0x55D4, "WCH CH9102", "bridge"),
    KnownUsb(0x067B, 0x2303, "Prolific PL2303", "bridge"),
)


def identify(vid: int | None, pid: int | None) -> KnownUsb | None:
    """The most specific known entry for a VID:PID (exact product before vendor-wide)."""
    if vid is None:
        return None
    exact = [k for k in KNOWN_USB if k.vid == vid and k.pid == pid]
    if exact:
        return exact[0]
    vendor = [k for k in KNOWN_USB if k.vid == vid and k.pid is None]
    return vendor[0] if vendor else None
