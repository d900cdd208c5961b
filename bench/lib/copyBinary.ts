import type { Vector } from '../../src/embeddings/provider.ts'
import { vectorBytes, viewOf, writeVector } from '../../src/db/vectorBinary.ts'

// For bench/writePaths.ts, the alternative the runner measured and did not take: rows in
// PostgreSQL's binary COPY format (the COPY page of its manual, "Binary Format"): a signature,
// flags and an extension length, then each row as its field count and each field as its
// length and bytes, then -1. A text field is its UTF-8; a bigint is an int8; a number[] is a
// pgvector vector in its binary form (src/db/vectorBinary.ts).

export type CopyField = string | bigint | Vector

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1')

const fieldLength = (field: CopyField): number =>
  typeof field === 'string' ? Buffer.byteLength(field) : typeof field === 'bigint' ? 8 : vectorBytes(field)

/** One buffer holding every row, ready for `COPY ... FROM STDIN WITH (FORMAT binary)`. */
export function encodeCopyBinary(rows: CopyField[][]): Buffer {
  let size = SIGNATURE.length + 8 + 2
  for (const row of rows) size += 2 + row.reduce((n, field) => n + 4 + fieldLength(field), 0)
  const out = Buffer.alloc(size)
  const view = viewOf(out)
  let at = SIGNATURE.copy(out, 0) + 8 // flags 0 (no OIDs) and no header extension: zeros already
  for (const row of rows) {
    at = out.writeInt16BE(row.length, at)
    for (const field of row) {
      at = out.writeInt32BE(fieldLength(field), at)
      if (typeof field === 'string') at += out.write(field, at, 'utf8')
      else if (typeof field === 'bigint') at = out.writeBigInt64BE(field, at)
      else at = writeVector(view, at, field)
    }
  }
  out.writeInt16BE(-1, at)
  return out
}
