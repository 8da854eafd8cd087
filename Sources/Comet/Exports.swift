@_exported import CometWire
