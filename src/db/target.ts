import { TargetError } from '../errors.ts'
import { keyColumnsOf, type Plan, type TargetTable } from '../plan/schema.ts'
import { readTableColumns } from './catalog/readTableColumns.ts'
import type { TableColumn, VectorType } from './catalog/vocabulary.ts'
import type { Queryable } from './database.ts'
import { quoteIdent, quoteLiteral, quoteQualified } from './quote.ts'
import { type Precision, searchExpression, type SearchExpression } from './searchExpression.ts'

// A target table of the plan, resolved against the database: its identifiers quoted once by
// the driver's escaping, its key and vector types read from the catalog. It owns every piece
// of SQL about the application's table: the text that is embedded, its hash, the nearest-k
// query, the counts. Diagnose, index, backfill, validate, `runner search` and the worker all
// use this one type, so the query they measure is the query they build the index for.

export interface NearestOptions {
  /** Also select the embedded text (for `runner search`). */
  withText?: boolean
}

export class Target {
  /** 'public.atoms': how the queue, the metadata and the reports name the table. */
  readonly name: string
  /** "public"."atoms" */
  readonly table: string
  /** 'public.atoms', or for one partition 'public.atoms "public"."atoms_2026"': a checkpoint's and a progress line's name for it. */
  readonly label: string
  /** The key's columns, as the plan names them. */
  readonly keyColumns: string[]
  /** "embedding" */
  readonly embedding: string
  /** The text columns, quoted and comma-separated, for UPDATE OF. */
  readonly textColumns: string

  constructor(
    readonly plan: TargetTable,
    /** Each key column's SQL type, so look-ups by key use its index: bigint, uuid, text... */
    readonly keyTypes: string[],
    /** The embedding column's SQL type (vector(1536)), and its vector type and dimensions when it is one. */
    readonly embeddingType: string,
    /** untyped: a column declared without dimensions (vector, not vector(N)), whose dimensions are the plan's model's. */
    readonly vector: { type: VectorType; dimensions: number; untyped?: boolean } | null,
    /** Every column of the table as the catalog had it when resolved (checks and copies read these, not the catalog again). */
    readonly columns: TableColumn[],
    /** The relation its SQL reads and writes, when not the plan's table itself: one leaf partition of it (see partition()). */
    relation?: string,
  ) {
    this.name = `${plan.schema}.${plan.table}`
    this.table = relation ?? quoteQualified(plan.schema, plan.table)
    this.label = relation ? `${this.name} ${relation}` : this.name
    this.keyColumns = keyColumnsOf(plan)
    this.embedding = quoteIdent(plan.embedding_column)
    this.textColumns = plan.text_columns.map(quoteIdent).join(', ')
  }

  /**
   * The same target, reading and writing one leaf partition (quoted) directly: a write by key
   * through a partitioned parent looks the key up in every partition, one through its partition
   * in one. The queue and the metadata still name the parent.
   */
  partition(relation: string): Target {
    return new Target(this.plan, this.keyTypes, this.embeddingType, this.vector, this.columns, relation)
  }

  // The row key. The queue, the metadata, the cursor and the staging table hold it as text: the
  // key column's own text form (as every release has stored it), or for a key of several
  // columns a JSON array of them (jsonb_build_array keeps each value exactly, a timestamptz to
  // the microsecond). Rows are found through the columns themselves, so their index serves.

  /** The key as the runner stores it: text. */
  keyText(alias?: string): string {
    const columns = this.keyColumns.map((c) => (alias ? `${alias}.${quoteIdent(c)}` : quoteIdent(c)))
    return columns.length === 1 ? `${columns[0]}::text` : `jsonb_build_array(${columns.join(', ')})::text`
  }

  /** The key's columns, to compare: "id", or ("id", "sent_at") as a row. */
  keyValue(alias?: string): string {
    const columns = this.keyColumns.map((c) => (alias ? `${alias}.${quoteIdent(c)}` : quoteIdent(c)))
    return columns.length === 1 ? columns[0]! : `(${columns.join(', ')})`
  }

  /** The key's columns in order, for ORDER BY. */
  keyOrder(alias?: string): string {
    return this.keyColumns.map((c) => (alias ? `${alias}.${quoteIdent(c)}` : quoteIdent(c))).join(', ')
  }

  /** The key's values, typed, from a key as the runner stores it (an SQL text expression): a select list. */
  keyFromText(text: string): string {
    return this.keyTypes.length === 1
      ? `(${text})::${this.keyTypes[0]}`
      : this.keyTypes.map((type, i) => `((${text})::jsonb->>${i})::${type}`).join(', ')
  }

  /** The key's values from a stored key, as one value to compare keyValue with. */
  keyOf(text: string): string {
    return this.keyTypes.length === 1 ? this.keyFromText(text) : `(${this.keyFromText(text)})`
  }

  /** A condition: the row is one of the stored keys in the text[] expression `keys`. */
  keyIn(keys: string, alias?: string): string {
    return `${this.keyValue(alias)} IN (SELECT ${this.keyFromText('k')} FROM unnest(${keys}) AS k)`
  }

  /**
   * The embedded text: the plan's text_template filled from the columns (a NULL one empty),
   * or the text columns joined by a space (concat_ws skips NULLs). The one definition the
   * backfill, the capture, the worker and search all embed.
   */
  text(alias?: string): string {
    const column = (c: string) => (alias ? `${alias}.${quoteIdent(c)}` : quoteIdent(c))
    const template = this.plan.text_template
    if (!template) return `concat_ws(' ', ${this.plan.text_columns.map(column).join(', ')})`
    const parts = template.split(/(\{[^{}]+\})/).filter((p) => p !== '')
    return `concat(${parts.map((p) => (/^\{[^{}]+\}$/.test(p) ? column(p.slice(1, -1)) : quoteLiteral(p))).join(', ')}, '')`
  }

  /**
   * Whether a row has anything to embed: its text holds a character other than white space.
   * A row without (every text column NULL or blank) is left NULL and counted apart: the
   * embedding of " " would be one vector shared by all of them, matching nothing.
   */
  hasText(alias?: string): string {
    // The columns, not the template: a template's own words are no text of the row's.
    const column = (c: string) => (alias ? `${alias}.${quoteIdent(c)}` : quoteIdent(c))
    return `(concat_ws(' ', ${this.plan.text_columns.map(column).join(', ')}) ~ '[^[:space:]]')`
  }

  /** The content hash that guards every embedding write: sha256 of the embedded text. */
  hash(alias?: string): string {
    return `encode(sha256(convert_to(${this.text(alias)}, 'UTF8')), 'hex')`
  }

  /** The vector type and dimensions, or a clear refusal for a column that is not vector(N). */
  requireVector(): { type: VectorType; dimensions: number; untyped?: boolean } {
    if (!this.vector) {
      throw new TargetError(
        `${this.name}.${this.plan.embedding_column} is ${this.embeddingType}, not vector(N) or halfvec(N) with fixed dimensions`,
      )
    }
    return this.vector
  }

  /** What queries order by and the index is built on, at the given precision. */
  search(precision: Precision, rerankFactor?: number): SearchExpression {
    const { type, dimensions, untyped } = this.requireVector()
    return searchExpression(this.plan.embedding_column, dimensions, type, this.plan.distance, precision, rerankFactor, untyped)
  }

  /** The same table once its column is typed vector(N) (untyped_column: set_type): what the index is then built on. */
  asTyped(): Target {
    const { type, dimensions } = this.requireVector()
    return new Target(this.plan, this.keyTypes, `${type}(${dimensions})`, { type, dimensions }, this.columns)
  }

  /**
   * A condition on a stored vector (of alias `t`, or the table itself): it is of the plan's
   * dimensions. Always so for a typed column; for an untyped one, the vectors of other lengths
   * are another model's, and the runner leaves them as they are.
   */
  ofDimensions(alias?: string): string {
    if (!this.vector?.untyped) return 'true'
    return `vector_dims(${alias ? `${alias}.` : ''}${this.embedding}) = ${this.vector.dimensions}`
  }

  /**
   * The application's nearest-k query: $1 is the query vector (text form), $2 the limit. Every
   * query the runner times, explains or answers with is this one.
   */
  nearestSql(search: SearchExpression, options: NearestOptions = {}): string {
    const distance = `${search.expression} ${search.operator} ${search.query}`
    const where = search.where ? ` WHERE ${search.where}` : ''
    if (!search.rerank) {
      const text = options.withText ? `, ${this.text()} AS text` : ''
      return `SELECT ${this.keyText()} AS key, (${distance})::float8 AS distance${text} FROM ${this.table}${where} ORDER BY ${distance} LIMIT $2`
    }
    // The index's candidates by Hamming distance, then the nearest of them by the full vector (pgvector's re-ranking).
    const exact = `c.${this.embedding} ${search.rerank.operator} $1::${search.rerank.castType}`
    const text = options.withText ? `, ${this.text('c')} AS text` : ''
    return `SELECT ${this.keyText('c')} AS key, (${exact})::float8 AS distance${text} FROM (SELECT * FROM ${this.table}${where} ORDER BY ${distance} LIMIT $2 * ${search.rerank.factor}) c ORDER BY ${exact} LIMIT $2`
  }

  /** Rows, rows with a NULL embedding, and of those the rows with no text to embed (left NULL on purpose). */
  async counts(db: Queryable): Promise<{ rows: number; nulls: number; no_text: number }> {
    const { rows } = await db.query<{ rows: number; nulls: number; no_text: number }>(
      `SELECT count(*)::int AS rows, (count(*) - count(${this.embedding}))::int AS nulls,
              count(*) FILTER (WHERE ${this.embedding} IS NULL AND NOT ${this.hasText()})::int AS no_text
       FROM ${this.table}`,
    )
    return rows[0]!
  }

  /**
   * Rows and rows without an embedding in each relation that holds rows: the table itself, or
   * each leaf partition of a partitioned one (a partition with no rows is absent).
   */
  async countsByPartition(db: Queryable): Promise<{ table: string; rows: number; nulls: number }[]> {
    const { rows } = await db.query<{ table: string; rows: number; nulls: number }>(
      `SELECT n.nspname || '.' || c.relname AS table, s.rows, s.nulls
       FROM (SELECT tableoid, count(*)::int AS rows, (count(*) - count(${this.embedding}))::int AS nulls FROM ${this.table} GROUP BY tableoid) s
       JOIN pg_class c ON c.oid = s.tableoid JOIN pg_namespace n ON n.oid = c.relnamespace ORDER BY 1`,
    )
    return rows
  }

  /** Rows without an embedding, and the bytes of their text: what a backfill will send. */
  async nullTextSize(db: Queryable): Promise<{ rows: number; bytes: number }> {
    const { rows } = await db.query<{ rows: number; bytes: number }>(
      `SELECT count(*)::int AS rows, coalesce(sum(octet_length(${this.text()})), 0)::float8 AS bytes FROM ${this.table}
       WHERE ${this.embedding} IS NULL AND ${this.hasText()}`,
    )
    return rows[0]!
  }

  /**
   * Where the stored vectors come from, by the runner's metadata: made by this model, by
   * another, or of unknown origin (no record: written before the runner, or by the
   * application); and how many of this model's no longer match their text.
   */
  async originCounts(
    db: Queryable,
    meta: string | null,
    model: string,
  ): Promise<{ embedded: number; this_model: number; other_model: number; unknown: number; stale: number }> {
    if (!meta) {
      const { rows, nulls } = await this.counts(db)
      return { embedded: rows - nulls, this_model: 0, other_model: 0, unknown: rows - nulls, stale: 0 }
    }
    const { rows } = await db.query<{ embedded: number; this_model: number; other_model: number; unknown: number; stale: number }>(
      `SELECT count(*)::int AS embedded,
              count(*) FILTER (WHERE m.model = $2)::int AS this_model,
              count(*) FILTER (WHERE m.model <> $2)::int AS other_model,
              count(*) FILTER (WHERE m.row_key IS NULL)::int AS unknown,
              count(*) FILTER (WHERE m.model = $2 AND m.content_hash <> ${this.hash('t')})::int AS stale
       FROM ${this.table} t LEFT JOIN ${meta} m ON m.table_name = $1 AND m.row_key = ${this.keyText('t')}
       WHERE t.${this.embedding} IS NOT NULL AND ${this.ofDimensions('t')}`,
      [this.name, model],
    )
    return rows[0]!
  }

  /**
   * The next page of rows whose stored vector is not this model's: of unknown origin, or made
   * by another model. By key after the cursor.
   */
  async readForeignPage(
    db: Queryable,
    meta: string | null,
    model: string,
    after: string | null,
    limit: number,
    /** Which vectors of unknown origin are embedded again: a condition on `t` (true: all of them), or null for none. */
    unknown: string | null,
  ): Promise<TextRow[]> {
    // Without the runner's metadata (not installed yet), every stored vector is of unknown origin.
    const join = meta ? `LEFT JOIN ${meta} m ON m.table_name = $1 AND m.row_key = ${this.keyText('t')}` : ''
    const foreign = meta ? `(m.model <> $2 ${unknown ? `OR (m.row_key IS NULL AND ${unknown})` : ''})` : (unknown ?? 'false')
    const { rows } = await db.query<TextRow>(
      `SELECT ${this.keyText('t')} AS key, ${this.text('t')} AS text, ${this.hash('t')} AS hash
       FROM ${this.table} t ${join}
       WHERE t.${this.embedding} IS NOT NULL AND ${this.ofDimensions('t')} AND ${foreign} AND $1::text IS NOT NULL AND $2::text IS NOT NULL -- every form names $1 and $2
         ${after === null ? '' : `AND ${this.keyValue('t')} > ${this.keyOf('$4::text')}`}
       ORDER BY ${this.keyOrder('t')} LIMIT $3`,
      after === null ? [this.name, model, limit] : [this.name, model, limit, after],
    )
    return rows
  }

  /**
   * Rows with a stored vector and no record of its origin, drawn at random from all of them
   * (the first keys are often the ones somebody checked by hand), among those `plausible` (a
   * condition on `t`) keeps: a sample to compare with what the model gives for their text.
   */
  async sampleUnknownOrigin(db: Queryable, meta: string, count: number, plausible = 'true'): Promise<(TextRow & { vector: string })[]> {
    const { rows } = await db.query<TextRow & { vector: string }>(
      `SELECT ${this.keyText('t')} AS key, ${this.text('t')} AS text, ${this.hash('t')} AS hash, t.${this.embedding}::text AS vector
       FROM ${this.table} t WHERE t.${this.embedding} IS NOT NULL AND ${this.ofDimensions('t')} AND ${plausible}
         AND NOT EXISTS (SELECT 1 FROM ${meta} m WHERE m.table_name = $1 AND m.row_key = ${this.keyText('t')})
       ORDER BY random() LIMIT $2`,
      [this.name, count],
    )
    return rows
  }

  /** Of the stored vectors with no record of their origin, how many `implausible` (a condition on `t`) holds for. */
  async countUnknownOrigin(db: Queryable, meta: string, implausible: string): Promise<{ unknown: number; implausible: number }> {
    const { rows } = await db.query<{ unknown: number; implausible: number }>(
      `SELECT count(*)::int AS unknown, count(*) FILTER (WHERE ${implausible})::int AS implausible
       FROM ${this.table} t WHERE t.${this.embedding} IS NOT NULL AND ${this.ofDimensions('t')}
         AND NOT EXISTS (SELECT 1 FROM ${meta} m WHERE m.table_name = $1 AND m.row_key = ${this.keyText('t')})`,
      [this.name],
    )
    return rows[0]!
  }

  /** Rows with text and a stored vector, spread over the table the same way in every session: items to search for, and texts to embed again. */
  async sampleEmbeddedTexts(db: Queryable, count: number): Promise<(TextRow & { vector: string })[]> {
    const { rows } = await db.query<TextRow & { vector: string }>(
      `SELECT ${this.keyText()} AS key, ${this.text()} AS text, ${this.hash()} AS hash, ${this.embedding}::text AS vector
       FROM ${this.table} WHERE ${this.embedding} IS NOT NULL AND ${this.ofDimensions()} AND ${this.hasText()} ORDER BY md5(${this.keyText()}) LIMIT $1`,
      [count],
    )
    return rows
  }

  /**
   * The lengths of the vectors stored, and how many of each (for a column without dimensions,
   * where they may differ), by the model the runner's metadata records for them where it has
   * them (`meta`; null: no record, the vectors' origin is unknown).
   */
  async storedDimensions(db: Queryable, meta: string | null = null): Promise<{ dimensions: number; model: string | null; rows: number }[]> {
    const join = meta ? `LEFT JOIN ${meta} m ON m.table_name = $1 AND m.row_key = ${this.keyText('t')}` : ''
    const { rows } = await db.query<{ dimensions: number; model: string | null; rows: number }>(
      `SELECT vector_dims(t.${this.embedding}) AS dimensions, ${meta ? 'm.model' : 'NULL::text'} AS model, count(*)::int AS rows
       FROM ${this.table} t ${join} WHERE t.${this.embedding} IS NOT NULL AND $1::text IS NOT NULL GROUP BY 1, 2 ORDER BY 3 DESC`,
      [this.name],
    )
    return rows
  }

  /** One stored embedding in text form, to query with; undefined when none is stored yet. */
  async someEmbedding(db: Queryable): Promise<string | undefined> {
    const { rows } = await db.query<{ v: string }>(
      `SELECT ${this.embedding}::text AS v FROM ${this.table} WHERE ${this.embedding} IS NOT NULL AND ${this.ofDimensions()} LIMIT 1`,
    )
    return rows[0]?.v
  }

  /**
   * Stored embeddings spread over the table: realistic query vectors. The same ones in every
   * session on the same rows (ordered by a hash of the key, not at random), so that two sessions
   * measure, and recommend, the same thing.
   */
  async sampleEmbeddings(db: Queryable, count: number): Promise<string[]> {
    const { rows } = await db.query<{ v: string }>(
      `SELECT ${this.embedding}::text AS v FROM ${this.table} WHERE ${this.embedding} IS NOT NULL AND ${this.ofDimensions()}
       ORDER BY md5(${this.keyText()}) LIMIT $1`,
      [count],
    )
    return rows.map((r) => r.v)
  }

  /** The current text and its hash for these keys, and whether there is text to embed (rows that no longer exist are absent). */
  async readTexts(db: Queryable, keys: string[]): Promise<(TextRow & { has_text: boolean })[]> {
    const { rows } = await db.query<TextRow & { has_text: boolean }>(
      `SELECT ${this.keyText()} AS key, ${this.text()} AS text, ${this.hash()} AS hash, ${this.hasText()} AS has_text
       FROM ${this.table} WHERE ${this.keyIn('$1::text[]')}`,
      [keys],
    )
    return rows
  }

  /** The next page of rows without an embedding that have text to embed, by key after the cursor (never OFFSET). */
  async readNullPage(db: Queryable, after: string | null, limit: number): Promise<TextRow[]> {
    const { rows } = await db.query<TextRow>(
      `SELECT ${this.keyText()} AS key, ${this.text()} AS text, ${this.hash()} AS hash FROM ${this.table}
       WHERE ${this.embedding} IS NULL AND ${this.hasText()} ${after === null ? '' : `AND ${this.keyValue()} > ${this.keyOf('$2::text')}`}
       ORDER BY ${this.keyOrder()} LIMIT $1`,
      after === null ? [limit] : [limit, after],
    )
    return rows
  }
}

export interface TextRow {
  key: string
  text: string
  hash: string
}

/** Rows of a table and how many of them have no value in the column. */
export async function countColumn(db: Queryable, schema: string, table: string, column: string): Promise<{ rows: number; nulls: number }> {
  const { rows } = await db.query<{ rows: number; nulls: number }>(
    `SELECT count(*)::int AS rows, (count(*) - count(${quoteIdent(column)}))::int AS nulls FROM ${quoteQualified(schema, table)}`,
  )
  return rows[0]!
}

function resolveOne(t: TargetTable, columns: TableColumn[], dimensions: number): Target {
  const keyTypes = keyColumnsOf(t).map((name) => columns.find((c) => c.name === name)!.type)
  const embedding = columns.find((c) => c.name === t.embedding_column)!
  const isVector = embedding.base_type === 'vector' || embedding.base_type === 'halfvec'
  // A `vector` column with no dimension (LangChain's default) holds vectors of any length: the
  // plan's model decides which ones are the column's, and the index is on a cast to that length.
  const vector = !isVector
    ? null
    : embedding.typmod > 0
      ? { type: embedding.base_type as VectorType, dimensions: embedding.typmod }
      : { type: embedding.base_type as VectorType, dimensions, untyped: true }
  return new Target(t, keyTypes, embedding.type, vector, columns)
}

/**
 * Every target table of the plan, resolved. A table or column the plan names that the
 * database does not have stops here, before anything is changed, with the plan path of each
 * problem and the database's own names.
 */
export async function resolveTargets(db: Queryable, plan: Plan, planPath = 'the plan'): Promise<Target[]> {
  const problems: string[] = []
  const targets: Target[] = []
  for (const [i, t] of plan.target.tables.entries()) {
    const columns = await readTableColumns(db, t.schema, t.table)
    if (!columns) {
      problems.push(`target.tables[${i}].table: table ${t.schema}.${t.table} does not exist in the target database`)
      continue
    }
    const names = columns.map((c) => c.name)
    const keys = keyColumnsOf(t)
    const named: [string, string][] = [
      ...keys.map((c, j): [string, string] => [typeof t.key === 'string' ? 'key' : `key[${j}]`, c]),
      ['embedding_column', t.embedding_column],
      ...t.text_columns.map((c, j): [string, string] => [`text_columns[${j}]`, c]),
    ]
    const missing = named.filter(([, column]) => !names.includes(column))
    for (const [field, column] of missing) {
      problems.push(`target.tables[${i}].${field}: ${t.schema}.${t.table} has no column "${column}" (it has: ${names.join(', ')})`)
    }
    if (missing.length === 0) targets.push(resolveOne(t, columns, plan.embedding.dimensions))
  }
  if (problems.length)
    throw new TargetError(`${planPath}: the plan does not match the target database; nothing was changed:\n  ${problems.join('\n  ')}`)
  return targets
}
