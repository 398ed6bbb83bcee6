import { dotAt } from "./Vector.js"

/** One template as a gallery holds it: normalised vector, owner and the source's version tag. */
export interface GalleryTemplate {
  readonly templateId: string
  readonly personId: string
  /**
   * A 32-bit integer the source derives from the template's identity. The gallery keeps the sum
   * of its tags so that a cheap aggregate in the source tells whether the two still agree.
   */
  readonly tag: number
  readonly vector: Float32Array
}

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
 * `capacity x dimension` values with parallel arrays for template ids, owners and tags. Rows are
 * in no order: removing a template moves the last row into its place, so the block stays dense
 * and a search is one linear pass over memory.
 *
 * Mutations and searches are synchronous, so on one JavaScript thread a search always sees a
 * whole state, never a half-applied change.
 */
export class Gallery {
  readonly dimension: number
  #vectors: Float32Array
  #templateIds: Array<string> = []
  #owners: Array<string> = []
  #tags: Int32Array
  #size = 0
  #checksum = 0
  readonly #rowOf = new Map<string, number>()
  readonly #templatesOf = new Map<string, Set<string>>()

  constructor(dimension: number, capacity = 16) {
    if (!Number.isInteger(dimension) || dimension <= 0) throw new RangeError("dimension must be a positive integer")
    this.dimension = dimension
    const rows = Math.max(1, capacity)
    this.#vectors = new Float32Array(rows * dimension)
    this.#tags = new Int32Array(rows)
  }

  /** Number of templates. */
  get size(): number {
    return this.#size
  }

  /** Number of distinct people. */
  get people(): number {
    return this.#templatesOf.size
  }

  /** Sum of the tags of every template held. */
  get checksum(): number {
    return this.#checksum
  }

  /** Rows the vector block can hold before it grows. */
  get capacity(): number {
    return this.#tags.length
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
    this.#tags[row] = template.tag
    this.#checksum += template.tag | 0
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
    this.#checksum -= this.#tags[row]
    if (row !== last) {
      const d = this.dimension
      this.#vectors.copyWithin(row * d, last * d, last * d + d)
      this.#templateIds[row] = this.#templateIds[last]
      this.#owners[row] = this.#owners[last]
      this.#tags[row] = this.#tags[last]
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

    for (let row = 0, offset = 0; row < n; row++, offset += d) {
      const score = dotAt(vectors, offset, probe, d)
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
    let best = -Infinity
    for (const id of owned) {
      const score = dotAt(this.#vectors, this.#rowOf.get(id)! * this.dimension, probe, this.dimension)
      if (score > best) best = score
    }
    return best
  }

  #resize(rows: number): void {
    const vectors = new Float32Array(rows * this.dimension)
    vectors.set(this.#vectors.subarray(0, this.#size * this.dimension))
    const tags = new Int32Array(rows)
    tags.set(this.#tags.subarray(0, this.#size))
    this.#vectors = vectors
    this.#tags = tags
  }
}
