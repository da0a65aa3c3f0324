"""FHIR R4: the read API (`/fhir/R4`), push sync to an EHR (SMART Backend Services), Bulk Data export."""
