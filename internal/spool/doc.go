// Package spool is a crash-safe on-disk queue of opaque records: a write-ahead log split into
// segment files. A record appended survives a crash of the process as soon as Append returns,
// and an OS crash once it is fsynced (see SyncMode). Records acknowledged with Ack are dropped
// with their segment; the rest are read back with Read, after a restart too.
//
//	sp, err := spool.Open(spool.Options{Dir: dir})
//	seg, err := sp.Append(record) // later, once stored elsewhere: sp.Ack(seg, 1)
//
// # Replay
//
// Open keeps every segment left by an earlier run and starts a new one for appends. Reading from
// Start returns every frame kept, acked or not by the earlier run: no acknowledgement is stored
// on disk, so the consumer must tolerate a record delivered twice.
//
// # Files
//
//   - Dir/LOCK: an exclusive flock held while the Spool is open (released on Close or when the
//     process dies). On systems without flock an O_EXCL lock file is used instead, which a crash
//     leaves behind.
//   - Dir/%020d.seg: segment files, numbered from 1 so that name order is numeric order.
//
// # Segment format
//
// All integers are little-endian. A segment starts with an 8-byte header:
//
//	offset 0  uint32  magic 0x50534b41 (bytes "AKSP")
//	offset 4  uint32  format version, 1
//
// followed by frames, back to back:
//
//	offset 0  uint32  magic 0xf1a9e5c3 (bytes c3 e5 a9 f1)
//	offset 4  uint32  payload length n (at most MaxPayload)
//	offset 8  uint32  CRC-32C (Castagnoli) of bytes 4..8 followed by the payload
//	offset 12 n bytes payload
//
// # Damage
//
// A frame is valid when its magic, a length that fits in the file and its checksum all agree.
// Scanning that meets anything else looks forward, byte by byte, for the next valid frame, so one
// damaged frame loses only itself. The bytes skipped are logged (file, offset, size) and counted
// in Stats: as a torn tail when no valid frame follows them (a write cut short by a crash), as a
// corrupt region otherwise. A segment header with a wrong magic counts as a corrupt region; an
// unknown version makes Open fail rather than guess. Segments without any valid frame are
// removed by Open.
//
// # Durability
//
// Append writes each frame with one write(2) and never waits for fsync. A failed fsync is logged
// and counted, and every later Append fails with an error wrapping it until the Spool is closed
// and reopened: after a failed fsync the kernel may have dropped the unwritten pages, so the
// spool cannot promise anything about data appended before it. Each fsync round also fsyncs the
// directory when segment files were created or removed since the previous one.
package spool
