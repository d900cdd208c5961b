import pgvector from 'pgvector'
import type { Vector } from '../embeddings/provider.ts'

// Vectors as one binary query parameter of type vector[], so that nothing is printed or parsed
// as text: formatting 1,536 floats a row as text cost the backfill 130 µs a row of the thread
// that also embeds (bench/results.md, "Backfill writes"). PostgreSQL's binary array form
// (array_recv): dimensions, flags, the element type's oid, length and lower bound, then each
// element length-prefixed in its own binary form: for pgvector's vector (vector_recv), its
// dimensions (int16), an unused int16 and each value as a big-endian float4.

/** Bytes of one vector's binary form. */
export const vectorBytes = (vector: Vector): number => 4 + 4 * vector.length

/** Writes one vector's binary form at `at` of a view over the output; where it ends. */
export function writeVector(view: DataView, at: number, vector: Vector): number {
  view.setInt16(at, vector.length)
  view.setInt16(at + 2, 0)
  at += 4
  // Big-endian float4 written in place: no Float32Array and byte swap per vector, so less
  // garbage for the thread that also embeds.
  for (let i = 0; i < vector.length; i++, at += 4) view.setFloat32(at, vector[i]!)
  return at
}

/** A DataView over exactly this buffer's bytes. */
export const viewOf = (out: Buffer): DataView => new DataView(out.buffer, out.byteOffset, out.byteLength)

/** The binary form of vector[], for a statement's `$n::vector[]`; `vectorOid` is this database's oid of pgvector's type. */
export function encodeVectorArray(vectors: Vector[], vectorOid: number): Buffer {
  const out = Buffer.allocUnsafe(20 + vectors.reduce((n, v) => n + 4 + vectorBytes(v), 0)) // every byte is written below
  const view = viewOf(out)
  let at = out.writeInt32BE(1, 0) // one dimension
  at = out.writeInt32BE(0, at) // no NULL elements
  at = out.writeInt32BE(vectorOid, at)
  at = out.writeInt32BE(vectors.length, at)
  at = out.writeInt32BE(1, at) // lower bound
  for (const vector of vectors) {
    at = out.writeInt32BE(vectorBytes(vector), at)
    at = writeVector(view, at, vector)
  }
  return out
}

/** The text form of the same vector[] (an array literal of pgvector's literals), for a database that takes parameters as text. */
export function vectorArrayLiteral(vectors: Vector[]): string {
  return `{${vectors.map((v) => `"${pgvector.toSql(Array.from(v))}"`).join(',')}}`
}
