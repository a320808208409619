"""What finished runs become: tables (`report`, `evidence_tables`, `nlgp_tables`), the evidence of a run
(`evidence`), the docs' rendered tables (`rendered_docs`) and figures (`figures`, `scaling_figures`,
`nlgp_figures`, `frontier`). The top layer: may import every other."""
