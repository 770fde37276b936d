package pitest

import (
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
)

const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// PaymentIDLength is the length of the identifiers the Server gives payments.
const PaymentIDLength = 28

// randomID returns a payment identifier: PaymentIDLength random [A-Za-z0-9].
func randomID() string {
	b := make([]byte, PaymentIDLength)
	for i := range b {
		b[i] = idAlphabet[rand.IntN(len(idAlphabet))]
	}
	return string(b)
}

// randomTxID returns a transaction id: 64 lowercase hexadecimal digits.
func randomTxID() string {
	var b [32]byte
	fillRandom(b[:])
	return hex.EncodeToString(b[:])
}

// randomAddress returns a random Stellar account address (StrKey "G...", 56
// characters) with a valid version byte and CRC16 checksum.
func randomAddress() string {
	var key [32]byte
	fillRandom(key[:])
	return encodeAccountID(key)
}

// encodeAccountID encodes an ed25519 public key as a Stellar StrKey account
// id: base32(version byte 6<<3, key, CRC16-XModem little-endian).
func encodeAccountID(key [32]byte) string {
	raw := make([]byte, 0, 35)
	raw = append(raw, 6<<3)
	raw = append(raw, key[:]...)
	raw = binary.LittleEndian.AppendUint16(raw, crc16XModem(raw))
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(raw)
}

// crc16XModem is CRC-16/XMODEM (polynomial 0x1021, initial value 0).
func crc16XModem(data []byte) uint16 {
	var crc uint16
	for _, b := range data {
		crc ^= uint16(b) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

func fillRandom(b []byte) {
	for i := 0; i < len(b); i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], rand.Uint64())
		copy(b[i:], w[:])
	}
}
