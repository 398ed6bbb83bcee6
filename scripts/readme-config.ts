// Rewrites the configuration table of README.md from the settings the code reads.
import * as Fs from "node:fs"
import { markdownTable } from "../src/layers/Config.js"

const readme = Fs.readFileSync("README.md", "utf8")
const start = "<!-- config:start -->"
const end = "<!-- config:end -->"
const before = readme.slice(0, readme.indexOf(start) + start.length)
const after = readme.slice(readme.indexOf(end))
Fs.writeFileSync("README.md", `${before}\n${markdownTable()}\n${after}`)
