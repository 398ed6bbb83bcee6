import { allocateKernel, kernelStride, laneDot, pageBytes, type ScoresFunction, type WasmMemory } from "./Kernel.js"
import { dotAt } from "./Vector.js"

/** One template as a gallery holds it: its id, its owner and its normalised vector. */
export interface GalleryTemplate {
  readonly templateId: string
  readonly personId: string
  readonly vector: Float32Array
}

const pagesFor = (rows: number, dimension: number) => Math.ceil(((rows + 1) * dimension + rows) * 4 / pageBytes)

/** A person found by a search and the best score of any of their templates. */
export interface Candidate {
  readonly personId: string
  readonly score: number
}

/** Candidates rank by score, highest first; equal scores by person id, so answers are stable. */
export const ranksBefore = (scoreA: number, personA: string, scoreB: number, personB: string): boolean =>
  scoreA > scoreB || (scoreA === scoreB && personA < personB)

/**
 * The templates of one model in one gallery, stored as ONE contiguous `Float32Array` of
 * `capacity x dimension` values with parallel arrays of template ids and owners. Rows are
 * in no order: removing a template moves the last row into its place, so the block stays dense
 * and a search is one linear pass over memory.
 *
 * When the dimension is a multiple of 16 the block lives in WebAssembly memory and searches score
 * it with the SIMD kernel (`Kernel.ts`, float32 arithmetic); otherwise with `dotAt` (double
 * arithmetic). `scoreOf` scores one vector exactly as a search would.
 *
 * Mutations and searches are synchronous, so on one JavaScript thread a search always sees a
 * whole state, never a half-applied change.
 */
export class Gallery {
  readonly dimension: number
  #vectors: Float32Array
  // WebAssembly layout: [vectors: capacity x dimension][probe: dimension][scores: capacity], in floats.
  #memory: WasmMemory | undefined
  #kernel: ScoresFunction | null = null
  #probe: Float32Array | undefined
  #scores: Float32Array | undefined
  #templateIds: Array<string> = []
  #owners: Array<string> = []
  #capacity: number
  #size = 0
  readonly #rowOf = new Map<string, number>()
  readonly #templatesOf = new Map<string, Set<string>>()

  constructor(dimension: number, capacity = 16) {
    if (!Number.isInteger(dimension) || dimension <= 0) throw new RangeError("dimension must be a positive integer")
    this.dimension = dimension
    this.#capacity = Math.max(1, capacity)
    this.#vectors = this.#allocate(this.#capacity)
  }

  /** Scores `vector` against `probe` with the arithmetic this gallery's searches use. */
  scoreOf(vector: Float32Array, probe: Float32Array): number {
    return this.#kernel === null ? dotAt(vector, 0, probe, this.dimension) : laneDot(vector, 0, probe, this.dimension)
  }

  /** Whether searches run on the WebAssembly SIMD kernel. */
  get accelerated(): boolean {
    return this.#kernel !== null
  }

  /** Number of templates. */
  get size(): number {
    return this.#size
  }

  /** Number of distinct people. */
  get people(): number {
    return this.#templatesOf.size
  }

  /** Rows the vector block can hold before it grows. */
  get capacity(): number {
    return this.#capacity
  }

  has(templateId: string): boolean {
    return this.#rowOf.has(templateId)
  }

  hasPerson(personId: string): boolean {
    return this.#templatesOf.has(personId)
  }

  templateIds(): ReadonlyArray<string> {
    return this.#templateIds.slice(0, this.#size)
  }

  personIds(): ReadonlyArray<string> {
    return [...this.#templatesOf.keys()]
  }

  /** Adds a template, or replaces the one with the same id. The vector must be normalised. */
  upsert(template: GalleryTemplate): void {
    if (template.vector.length !== this.dimension) {
      throw new RangeError(`a ${template.vector.length}-value vector in a ${this.dimension}-dimension gallery`)
    }
    const existing = this.#rowOf.get(template.templateId)
    if (existing !== undefined) this.remove(template.templateId)
    if (this.#size === this.capacity) this.#resize(this.capacity * 2)
    const row = this.#size++
    this.#vectors.set(template.vector, row * this.dimension)
    this.#templateIds[row] = template.templateId
    this.#owners[row] = template.personId
    this.#rowOf.set(template.templateId, row)
    const owned = this.#templatesOf.get(template.personId)
    if (owned === undefined) this.#templatesOf.set(template.personId, new Set([template.templateId]))
    else owned.add(template.templateId)
  }

  /** Removes one template; false when it was not there. */
  remove(templateId: string): boolean {
    const row = this.#rowOf.get(templateId)
    if (row === undefined) return false
    const person = this.#owners[row]
    const last = this.#size - 1
    if (row !== last) {
      const d = this.dimension
      this.#vectors.copyWithin(row * d, last * d, last * d + d)
      this.#templateIds[row] = this.#templateIds[last]
      this.#owners[row] = this.#owners[last]
      this.#rowOf.set(this.#templateIds[row], row)
    }
    this.#templateIds.length = last
    this.#owners.length = last
    this.#size = last
    this.#rowOf.delete(templateId)
    const owned = this.#templatesOf.get(person)!
    owned.delete(templateId)
    if (owned.size === 0) this.#templatesOf.delete(person)
    // Give memory back after mass removals (erasures), keeping room so that churn does not thrash.
    if (this.capacity > 64 && this.#size < this.capacity / 4) this.#resize(Math.max(16, this.capacity >> 1))
    return true
  }

  /** Removes every template of a person; returns how many there were. */
  removePerson(personId: string): number {
    const owned = this.#templatesOf.get(personId)
    if (owned === undefined) return 0
    const ids = [...owned]
    for (const id of ids) this.remove(id)
    return ids.length
  }

  /**
   * The best `k` people whose best template scores at least `threshold` against the normalised
   * `probe`, ranked by `ranksBefore`. Exact: every template is scored. The running top-k is a
   * small sorted array whose last score is the floor a row must reach, so almost every row costs
   * one dot product and one comparison.
   */
  search(probe: Float32Array, k: number, threshold = -Infinity): Array<Candidate> {
    if (probe.length !== this.dimension) throw new RangeError("probe and gallery dimensions differ")
    if (!(k > 0)) return []
    const d = this.dimension
    const n = this.#size
    const vectors = this.#vectors
    const owners = this.#owners
    const scores = new Float64Array(k)
    const people: Array<string> = []
    let count = 0
    let floor = threshold

    const computed = this.#kernel === null ? undefined : this.#scoreAll(probe)
    for (let row = 0, offset = 0; row < n; row++, offset += d) {
      const score = computed === undefined ? dotAt(vectors, offset, probe, d) : computed[row]
      if (score < floor) continue
      const person = owners[row]

      // A person ranks once, with their best template.
      let at = -1
      for (let i = 0; i < count; i++) {
        if (people[i] === person) {
          at = i
          break
        }
      }
      if (at >= 0) {
        if (score <= scores[at]) continue
      } else if (count < k) {
        at = count++
      } else if (ranksBefore(score, person, scores[k - 1], people[k - 1])) {
        at = k - 1
      } else {
        continue
      }

      // Move the entry up to its rank.
      while (at > 0 && ranksBefore(score, person, scores[at - 1], people[at - 1])) {
        scores[at] = scores[at - 1]
        people[at] = people[at - 1]
        at--
      }
      scores[at] = score
      people[at] = person
      if (count === k) floor = Math.max(threshold, scores[k - 1])
    }

    const result: Array<Candidate> = []
    for (let i = 0; i < count; i++) result.push({ personId: people[i], score: scores[i] })
    return result
  }

  /** The best score of a person's templates against `probe`, or undefined if they have none here. */
  bestScore(personId: string, probe: Float32Array): number | undefined {
    if (probe.length !== this.dimension) throw new RangeError("probe and gallery dimensions differ")
    const owned = this.#templatesOf.get(personId)
    if (owned === undefined) return undefined
    const d = this.dimension
    let best = -Infinity
    for (const id of owned) {
      const offset = this.#rowOf.get(id)! * d
      const score = this.#kernel === null
        ? dotAt(this.#vectors, offset, probe, d)
        : laneDot(this.#vectors, offset, probe, d)
      if (score > best) best = score
    }
    return best
  }

  #scoreAll(probe: Float32Array): Float32Array {
    const floats = this.#capacity * this.dimension
    this.#probe!.set(probe)
    this.#kernel!(0, floats * 4, this.#size, this.dimension, (floats + this.dimension) * 4)
    return this.#scores!
  }

  /** A block for `rows` rows: in WebAssembly memory when the kernel applies, else a plain array. */
  #allocate(rows: number): Float32Array {
    const d = this.dimension
    if (d % kernelStride === 0) {
      const kernel = allocateKernel(pagesFor(rows, d))
      if (kernel !== null) {
        this.#memory = kernel.memory
        this.#kernel = kernel.scores
        this.#views(rows)
        return this.#vectors
      }
    }
    return new Float32Array(rows * d)
  }

  #views(rows: number): void {
    const d = this.dimension
    const buffer = this.#memory!.buffer
    this.#vectors = new Float32Array(buffer, 0, rows * d)
    this.#probe = new Float32Array(buffer, rows * d * 4, d)
    this.#scores = new Float32Array(buffer, (rows * d + d) * 4, rows)
  }

  #resize(rows: number): void {
    if (this.#memory !== undefined && rows > this.#capacity) {
      // Growing keeps the rows where they are: the block starts at address 0.
      const pages = pagesFor(rows, this.dimension)
      const have = this.#memory.buffer.byteLength / pageBytes
      if (pages > have) this.#memory.grow(pages - have)
      this.#views(rows)
    } else {
      // WebAssembly memory cannot shrink: a smaller gallery moves to a new block.
      const copy = this.#vectors.slice(0, this.#size * this.dimension)
      this.#vectors = this.#allocate(rows)
      this.#vectors.set(copy)
    }
    this.#capacity = rows
  }
}
