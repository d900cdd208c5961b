import pgvector from 'pgvector'

// Vectors as one binary query parameter of type vector[], so that nothing is printed or parsed
// as text: formatting 1,536 floats a row as text cost the backfill 130 µs a row of the thread
// that also embeds (bench/results.md, "Backfill writes"). PostgreSQL's binary array form
// (array_recv): dimensions, flags, the element type's oid, length and lower bound, then each
// element length-prefixed in its own binary form: for pgvector's vector (vector_recv), its
// dimensions (int16), an unused int16 and each value as a big-endian float4.

const isLittleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

/** Bytes of one vector's binary form. */
export const vectorBytes = (vector: number[]): number => 4 + 4 * vector.length

/** Writes one vector's binary form at `at`; where it ends. */
export function writeVector(out: Buffer, at: number, vector: number[]): number {
  at = out.writeInt16BE(vector.length, at)
  at = out.writeInt16BE(0, at)
  const values = Buffer.from(new Float32Array(vector).buffer)
  if (isLittleEndian) values.swap32()
  return at + values.copy(out, at)
}

/** The binary form of vector[], for a statement's `$n::vector[]`; `vectorOid` is this database's oid of pgvector's type. */
export function encodeVectorArray(vectors: number[][], vectorOid: number): Buffer {
  const out = Buffer.alloc(20 + vectors.reduce((n, v) => n + 4 + vectorBytes(v), 0))
  let at = out.writeInt32BE(1, 0) // one dimension
  at = out.writeInt32BE(0, at) // no NULL elements
  at = out.writeInt32BE(vectorOid, at)
  at = out.writeInt32BE(vectors.length, at)
  at = out.writeInt32BE(1, at) // lower bound
  for (const vector of vectors) {
    at = out.writeInt32BE(vectorBytes(vector), at)
    at = writeVector(out, at, vector)
  }
  return out
}

/** The text form of the same vector[] (an array literal of pgvector's literals), for a database that takes parameters as text. */
export function vectorArrayLiteral(vectors: number[][]): string {
  return `{${vectors.map((v) => `"${pgvector.toSql(v)}"`).join(',')}}`
}
