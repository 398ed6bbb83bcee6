import type { Migration } from "../services/Migrator.js"
import { migration as inbox } from "./0100_inbox.js"
import { migration as inboxSubject } from "./0101_inbox_subject.js"
import { migration as messaging } from "./0200_messaging.js"
import { migration as jobClaim } from "./0210_job_claim.js"
import { migration as identity } from "./0300_identity.js"
import { migration as masterKeyCheck } from "./0301_master_key_check.js"
import { migration as ticketing } from "./0400_ticketing.js"
import { migration as admission } from "./0500_admission.js"

/**
 * Every schema change of the project, one module per component. Ids are reserved per component
 * in blocks of 100 so that work on separate components never picks the same id.
 */
export const migrations: ReadonlyArray<Migration> = [
  inbox,
  inboxSubject,
  messaging,
  jobClaim,
  identity,
  masterKeyCheck,
  ticketing,
  admission
]
