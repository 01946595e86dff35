/// The registry's OpenAPI document, served at `/openapi.yaml`. The same text is in
/// docs/registry-openapi.yaml; a test keeps the two equal.
enum RegistryOpenAPI {
    static let document = #"""
openapi: 3.1.0
info:
  title: Wharf model registry
  version: "1"
  description: |
    Model versions with lineage, validations, aliases with an audit log, content-addressed
    artifacts, and the history of pipeline runs. Writes need `Authorization: Bearer <token>`;
    reads too when the registry runs with --protect-reads. `X-Wharf-Actor` names who makes a change (default "api").
    Every error is `{"error": "<message>"}` with the status below.
servers:
  - url: http://127.0.0.1:8081
components:
  securitySchemes:
    bearer:
      type: http
      scheme: bearer
  parameters:
    name:
      name: name
      in: path
      required: true
      schema: {type: string, pattern: "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}
    version:
      name: version
      in: path
      required: true
      schema: {type: integer, minimum: 1}
    alias:
      name: alias
      in: path
      required: true
      schema: {type: string, pattern: "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}
  responses:
    error:
      description: What was wrong, and where.
      content:
        application/json:
          schema: {$ref: "#/components/schemas/Error"}
  schemas:
    Error:
      type: object
      required: [error]
      properties:
        error: {type: string}
    Dataset:
      type: object
      required: [sha256, rows, columns]
      properties:
        sha256: {type: string, pattern: "^[0-9a-f]{64}$"}
        rows: {type: integer}
        columns: {type: integer}
    Artifact:
      type: object
      required: [sha256, size]
      properties:
        sha256: {type: string, pattern: "^[0-9a-f]{64}$"}
        size: {type: integer, minimum: 1}
    Signature:
      type: object
      required: [features, feature_types, outputs]
      properties:
        features: {type: array, items: {type: string}}
        feature_types: {type: array, items: {type: string, enum: [numeric, categorical]}}
        outputs: {type: array, items: {type: string}}
    Lineage:
      type: object
      properties:
        training_data: {$ref: "#/components/schemas/Dataset"}
        code_revision: {type: string}
        parent_version: {type: integer, minimum: 1}
    VersionDraft:
      type: object
      required: [format, task, signature, artifact, params, tags, lineage]
      properties:
        format: {type: string, examples: [xgboost_json, lightgbm_text, wharf_linear]}
        task: {type: string, enum: [binary, multiclass, regression]}
        signature: {$ref: "#/components/schemas/Signature"}
        artifact: {$ref: "#/components/schemas/Artifact"}
        params: {type: object, additionalProperties: {type: string}}
        tags: {type: object, additionalProperties: {type: string}}
        lineage: {$ref: "#/components/schemas/Lineage"}
    Gate:
      type: object
      required: [gate, passed, detail]
      properties:
        gate: {type: string, examples: ["roc_auc>=0.9"]}
        value: {type: [number, "null"]}
        threshold: {type: [number, "null"]}
        passed: {type: boolean}
        detail: {type: string}
    Validation:
      type: object
      required: [data, metrics, gates, passed]
      properties:
        data: {$ref: "#/components/schemas/Dataset"}
        metrics: {type: object, additionalProperties: {type: number}}
        gates: {type: array, items: {$ref: "#/components/schemas/Gate"}}
        passed: {type: boolean}
        against: {type: string, description: "alias@version compared with"}
        at: {type: string, format: date-time}
        by: {type: string}
    Version:
      allOf:
        - {$ref: "#/components/schemas/VersionDraft"}
        - type: object
          required: [name, version, validations, state, created_at, created_by]
          properties:
            name: {type: string}
            version: {type: integer}
            validations: {type: array, items: {$ref: "#/components/schemas/Validation"}}
            state: {type: string, enum: [registered, validated, archived]}
            created_at: {type: string, format: date-time}
            created_by: {type: string}
    Model:
      type: object
      required: [name, aliases]
      properties:
        name: {type: string}
        latest_version: {type: [integer, "null"]}
        aliases: {type: object, additionalProperties: {type: integer}}
        validation_data: {$ref: "#/components/schemas/Dataset"}
    Alias:
      type: object
      required: [name, alias, version, updated_at, updated_by]
      properties:
        name: {type: string}
        alias: {type: string}
        version: {type: integer}
        updated_at: {type: string, format: date-time}
        updated_by: {type: string}
    AuditEntry:
      type: object
      required: [id, name, action, actor, forced, at]
      properties:
        id: {type: integer}
        name: {type: string}
        action: {type: string, enum: [alias.set, alias.delete, version.archive, validation_data.set]}
        alias: {type: string}
        from_version: {type: integer}
        to_version: {type: integer}
        actor: {type: string}
        reason: {type: string}
        forced: {type: boolean}
        at: {type: string, format: date-time}
    PipelineRun:
      type: object
      description: One run of a pipeline, saved as it progresses (outcome running until it ends).
      required: [id, pipeline, started_at, outcome, trigger, steps]
      properties:
        id: {type: string, pattern: "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}
        pipeline: {type: string, pattern: "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}
        started_at: {type: string, format: date-time}
        finished_at: {type: string, format: date-time}
        outcome: {type: string, enum: [running, succeeded, failed]}
        trigger: {type: string, maxLength: 256, description: "manual, api, drift, schedule, new-data: …"}
        steps:
          type: array
          maxItems: 200
          items:
            type: object
            required: [name, outcome, attempts, seconds, outputs]
            properties:
              name: {type: string}
              outcome: {type: string, enum: [succeeded, cached, failed, skipped]}
              attempts: {type: integer, minimum: 0}
              seconds: {type: number, minimum: 0}
              outputs:
                type: object
                additionalProperties:
                  type: object
                  required: [path, sha256]
                  properties: {path: {type: string}, sha256: {type: string, pattern: "^[0-9a-f]{64}$"}}
              cache_key: {type: string}
              log: {type: string, description: the whole log's path on the machine that ran the step}
              log_tail: {type: string, maxLength: 16384}
              error: {type: string}
              metrics: {type: object, additionalProperties: {type: number}}
paths:
  /v1/health/live:
    get:
      summary: The process is up.
      responses: {"200": {description: up}}
  /v1/health/ready:
    get:
      summary: The store is open and the API answers.
      responses: {"200": {description: ready}}
  /openapi.yaml:
    get:
      summary: This document.
      responses: {"200": {description: the document, content: {application/yaml: {}}}}
  /v1/artifacts:
    post:
      summary: Upload a model file (streamed, hashed, stored atomically under its sha256).
      security: [{bearer: []}]
      requestBody:
        required: true
        content: {application/octet-stream: {schema: {type: string, format: binary}}}
      responses:
        "201": {description: stored, content: {application/json: {schema: {$ref: "#/components/schemas/Artifact"}}}}
        "400": {$ref: "#/components/responses/error"}
        "401": {$ref: "#/components/responses/error"}
        "413": {$ref: "#/components/responses/error"}
  /v1/artifacts/{sha256}:
    get:
      summary: An artifact's bytes, verified against their sha256 before they are sent.
      parameters:
        - {name: sha256, in: path, required: true, schema: {type: string, pattern: "^[0-9a-f]{64}$"}}
      responses:
        "200": {description: the bytes, content: {application/octet-stream: {}}}
        "400": {$ref: "#/components/responses/error"}
        "404": {$ref: "#/components/responses/error"}
        "500": {$ref: "#/components/responses/error"}
  /v1/runs:
    get:
      summary: Pipeline runs, the newest `limit` (default 100), oldest first.
      parameters:
        - {name: pipeline, in: query, schema: {type: string}}
        - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 1000}}
      responses:
        "200": {description: the runs, content: {application/json: {schema: {type: object, properties: {runs: {type: array, items: {$ref: "#/components/schemas/PipelineRun"}}}}}}}
        "400": {$ref: "#/components/responses/error"}
  /v1/runs/{id}:
    parameters: [{name: id, in: path, required: true, schema: {type: string}}]
    get:
      summary: One pipeline run.
      responses:
        "200": {description: the run, content: {application/json: {schema: {$ref: "#/components/schemas/PipelineRun"}}}}
        "404": {$ref: "#/components/responses/error"}
    put:
      summary: Record a pipeline run (the pipeline runner saves each run as it progresses; the same id replaces the record).
      security: [{bearer: []}]
      requestBody:
        required: true
        content: {application/json: {schema: {$ref: "#/components/schemas/PipelineRun"}}}
      responses:
        "200": {description: recorded, content: {application/json: {schema: {$ref: "#/components/schemas/PipelineRun"}}}}
        "400": {$ref: "#/components/responses/error"}
        "401": {$ref: "#/components/responses/error"}
        "413": {$ref: "#/components/responses/error"}
  /v1/models:
    get:
      summary: Every model name.
      responses:
        "200":
          description: the models
          content: {application/json: {schema: {type: object, properties: {models: {type: array, items: {$ref: "#/components/schemas/Model"}}}}}}
  /v1/models/{name}:
    parameters: [{$ref: "#/components/parameters/name"}]
    get:
      summary: A model and all its versions.
      responses:
        "200":
          description: the model
          content: {application/json: {schema: {type: object, properties: {model: {$ref: "#/components/schemas/Model"}, versions: {type: array, items: {$ref: "#/components/schemas/Version"}}}}}}
        "404": {$ref: "#/components/responses/error"}
  /v1/models/{name}/validation-data:
    parameters: [{$ref: "#/components/parameters/name"}]
    put:
      summary: Register the dataset a version must pass validation on before a protected alias (production) may point at it.
      security: [{bearer: []}]
      requestBody: {required: true, content: {application/json: {schema: {$ref: "#/components/schemas/Dataset"}}}}
      responses:
        "200": {description: recorded, content: {application/json: {schema: {$ref: "#/components/schemas/AuditEntry"}}}}
        "400": {$ref: "#/components/responses/error"}
        "401": {$ref: "#/components/responses/error"}
  /v1/models/{name}/versions:
    parameters: [{$ref: "#/components/parameters/name"}]
    get:
      summary: Every version of a model, oldest first.
      responses:
        "200": {description: the versions, content: {application/json: {schema: {type: object, properties: {versions: {type: array, items: {$ref: "#/components/schemas/Version"}}}}}}}
    post:
      summary: Register a version (numbered by the registry, consecutively per name). Its artifact must have been uploaded.
      security: [{bearer: []}]
      requestBody: {required: true, content: {application/json: {schema: {$ref: "#/components/schemas/VersionDraft"}}}}
      responses:
        "201": {description: registered, content: {application/json: {schema: {$ref: "#/components/schemas/Version"}}}}
        "400": {$ref: "#/components/responses/error"}
        "401": {$ref: "#/components/responses/error"}
  /v1/models/{name}/versions/{version}:
    parameters: [{$ref: "#/components/parameters/name"}, {$ref: "#/components/parameters/version"}]
    get:
      summary: One version.
      responses:
        "200": {description: the version, content: {application/json: {schema: {$ref: "#/components/schemas/Version"}}}}
        "404": {$ref: "#/components/responses/error"}
  /v1/models/{name}/versions/{version}/artifact:
    parameters: [{$ref: "#/components/parameters/name"}, {$ref: "#/components/parameters/version"}]
    get:
      summary: The version's model file, verified.
      responses:
        "200": {description: the bytes, content: {application/octet-stream: {}}}
        "404": {$ref: "#/components/responses/error"}
  /v1/models/{name}/versions/{version}/validations:
    parameters: [{$ref: "#/components/parameters/name"}, {$ref: "#/components/parameters/version"}]
    post:
      summary: Record an offline validation (what `wharf validate` sends). A passing one marks the version validated.
      security: [{bearer: []}]
      requestBody: {required: true, content: {application/json: {schema: {$ref: "#/components/schemas/Validation"}}}}
      responses:
        "201": {description: recorded, content: {application/json: {schema: {$ref: "#/components/schemas/Version"}}}}
        "400": {$ref: "#/components/responses/error"}
        "404": {$ref: "#/components/responses/error"}
  /v1/models/{name}/versions/{version}/archive:
    parameters: [{$ref: "#/components/parameters/name"}, {$ref: "#/components/parameters/version"}]
    post:
      summary: Archive a version; refused (409) while an alias points at it.
      security: [{bearer: []}]
      requestBody: {content: {application/json: {schema: {type: object, properties: {reason: {type: string}}}}}}
      responses:
        "200": {description: archived, content: {application/json: {schema: {$ref: "#/components/schemas/Version"}}}}
        "409": {$ref: "#/components/responses/error"}
  /v1/models/{name}/aliases:
    parameters: [{$ref: "#/components/parameters/name"}]
    get:
      summary: The model's aliases.
      responses:
        "200": {description: the aliases, content: {application/json: {schema: {type: object, properties: {aliases: {type: array, items: {$ref: "#/components/schemas/Alias"}}}}}}}
  /v1/models/{name}/aliases/{alias}:
    parameters: [{$ref: "#/components/parameters/name"}, {$ref: "#/components/parameters/alias"}]
    get:
      summary: Resolve an alias.
      responses:
        "200": {description: the alias, content: {application/json: {schema: {$ref: "#/components/schemas/Alias"}}}}
        "404": {$ref: "#/components/responses/error"}
    put:
      summary: Point the alias at a version. Protected aliases (production) need a passing validation on the registered validation dataset, or force with a reason.
      security: [{bearer: []}]
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [version]
              properties:
                version: {type: integer, minimum: 1}
                reason: {type: string}
                force: {type: boolean}
                dry_run: {type: boolean, description: "check the move against the promotion policy without making it (the answer is the entry it would write; nothing is stored)"}
      responses:
        "200": {description: moved (or, with dry_run, would be), content: {application/json: {schema: {$ref: "#/components/schemas/AuditEntry"}}}}
        "400": {$ref: "#/components/responses/error"}
        "403": {$ref: "#/components/responses/error"}
        "404": {$ref: "#/components/responses/error"}
        "409": {$ref: "#/components/responses/error"}
    delete:
      summary: Remove the alias.
      security: [{bearer: []}]
      responses:
        "200": {description: removed, content: {application/json: {schema: {$ref: "#/components/schemas/AuditEntry"}}}}
        "404": {$ref: "#/components/responses/error"}
  /v1/models/{name}/audit:
    parameters: [{$ref: "#/components/parameters/name"}]
    get:
      summary: Every alias move, archive and validation-data change, oldest first.
      responses:
        "200": {description: the log, content: {application/json: {schema: {type: object, properties: {entries: {type: array, items: {$ref: "#/components/schemas/AuditEntry"}}}}}}}

"""#
}
