"""The networks: ESM3 trunk, structure encoder/decoder, function token decoder."""
