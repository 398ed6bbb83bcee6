/**
 * Face embedding models whose templates Gatehouse accepts. A template's model id fixes its
 * dimension; probes are compared only with templates of the same model. `threshold` is the
 * cosine similarity from which a match is accepted, a starting point that operators tune.
 */
export interface Model {
  readonly id: string
  readonly dimension: number
  readonly threshold: number
  readonly description: string
}

const table: ReadonlyArray<Model> = [
  {
    id: "arcface-r100@1",
    dimension: 512,
    threshold: 0.4,
    description: "ArcFace ResNet-100, 512-dimension embeddings"
  },
  {
    id: "facenet-128@1",
    dimension: 128,
    threshold: 0.6,
    description: "FaceNet, 128-dimension embeddings"
  },
  {
    id: "test-4d@1",
    dimension: 4,
    threshold: 0.9,
    description: "Four-dimension vectors for tests and demonstrations"
  }
]

export const models: ReadonlyMap<string, Model> = new Map(table.map((m) => [m.id, m]))

export const modelIds: ReadonlyArray<string> = table.map((m) => m.id)

export const findModel = (id: string): Model | undefined => models.get(id)

/** Largest dimension of any model: vectors longer than this are refused before any other check. */
export const maxDimension = Math.max(...table.map((m) => m.dimension))
