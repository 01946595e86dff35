/// The gateway's OpenAPI document, served at `/openapi.yaml`. The same text is in
/// docs/gateway-openapi.yaml; a test keeps the two equal.
enum GatewayOpenAPI {
    static let document = #"""
openapi: 3.1.0
info:
  title: Wharf gateway
  version: "1"
  description: |
    The OIP v2 inference API in front of the model servers, and the deployments and keys APIs
    that steer it. Keys go in `Authorization: Bearer <key>` or `X-API-Key`. Scopes:
    `infer:<model>` / `infer:*` (inference; open with --open-inference), `deploy`
    (deployments), `admin` (everything). Errors are `{"error": "<message>"}`; 429 and 503
    carry `Retry-After`.
servers:
  - url: http://127.0.0.1:8080
components:
  securitySchemes:
    key: {type: http, scheme: bearer}
  parameters:
    model: {name: model, in: path, required: true, schema: {type: string, pattern: "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}}
  responses:
    error:
      description: What was wrong.
      content: {application/json: {schema: {type: object, required: [error], properties: {error: {type: string}}}}}
  schemas:
    Target:
      type: object
      required: [version, weight, replicas]
      additionalProperties: false
      properties:
        version: {type: string, description: "a registry version number or alias label"}
        weight: {type: number, minimum: 0, maximum: 1000000}
        replicas: {type: array, items: {type: string, format: uri}, minItems: 1, description: "http[s]://host[:port][/prefix], each server once"}
    Shadow:
      type: object
      required: [version, share, replicas]
      additionalProperties: false
      properties:
        version: {type: string, description: "not one of the targets' versions"}
        share: {type: number, minimum: 0, maximum: 1}
        replicas: {type: array, items: {type: string, format: uri}, minItems: 1}
    Deployment:
      type: object
      required: [model, targets]
      additionalProperties: false
      properties:
        model: {type: string}
        targets: {type: array, items: {$ref: "#/components/schemas/Target"}, minItems: 1}
        shadow: {$ref: "#/components/schemas/Shadow"}
        sticky_header: {type: string, description: "route by this header with consistent hashing"}
        timeout_ms: {type: integer, default: 10000}
        retries: {type: integer, default: 2, maximum: 5}
        max_concurrency: {type: integer, default: 256}
    Canary:
      type: object
      required: [version, replicas]
      additionalProperties: false
      properties:
        version: {type: string}
        replicas: {type: array, items: {type: string, format: uri}}
        steps: {type: array, items: {type: number}, default: [5, 25, 50, 100]}
        interval_seconds: {type: number, default: 30}
        max_error_rate: {type: number, default: 0.01}
        max_p99_ms: {type: number}
        min_requests: {type: integer, default: 20}
    Status:
      type: object
      properties:
        model: {type: string}
        spec: {$ref: "#/components/schemas/Deployment"}
        versions:
          type: array
          items:
            type: object
            properties:
              version: {type: string}
              weight: {type: number}
              role: {type: string, enum: [primary, shadow]}
              live:
                type: object
                properties:
                  requests: {type: integer}
                  error_rate: {type: number}
                  p50_ms: {type: number}
                  p99_ms: {type: number}
                  shadow_compared: {type: integer}
                  shadow_disagreement_rate: {type: number}
              replicas:
                type: array
                items:
                  type: object
                  properties:
                    url: {type: string}
                    outstanding: {type: integer}
                    ready: {type: boolean}
                    breaker_open: {type: boolean}
                    consecutive_failures: {type: integer}
        in_flight: {type: integer}
        canary:
          type: object
          properties:
            version: {type: string}
            steps: {type: array, items: {type: number}}
            step: {type: number}
            state: {type: string, enum: [running, promoted, rolled_back]}
            reason: {type: string}
            started_at: {type: string, format: date-time}
            ended_at: {type: string, format: date-time}
        history:
          type: array
          items:
            type: object
            properties:
              at: {type: string, format: date-time}
              actor: {type: string}
              action: {type: string}
              detail: {type: string}
              weights: {type: object, additionalProperties: {type: number}}
        can_roll_back: {type: boolean}
paths:
  /v2/health/live:
    get: {summary: The gateway is up., responses: {"200": {description: up}}}
  /v2/health/ready:
    get: {summary: The gateway routes., responses: {"200": {description: ready}}}
  /v2/models/{model}:
    parameters: [{$ref: "#/components/parameters/model"}]
    get: {summary: Metadata from a replica of the main version., responses: {"200": {description: metadata}, "404": {$ref: "#/components/responses/error"}}}
  /v2/models/{model}/infer:
    parameters: [{$ref: "#/components/parameters/model"}]
    post:
      summary: Inference, routed by the deployment (weights, sticky header, retries, bulkhead). Answers carry x-wharf-model-version and x-wharf-deployment-version.
      security: [{key: []}]
      responses:
        "200": {description: the model's answer}
        "401": {$ref: "#/components/responses/error"}
        "403": {$ref: "#/components/responses/error"}
        "404": {$ref: "#/components/responses/error"}
        "429": {$ref: "#/components/responses/error"}
        "503": {$ref: "#/components/responses/error"}
  /v1/deployments:
    get: {summary: Every deployment's status., security: [{key: []}], responses: {"200": {description: statuses}}}
  /v1/deployments/{model}:
    parameters: [{$ref: "#/components/parameters/model"}]
    get:
      summary: Spec, live figures per version and replica, the canary, the change history.
      security: [{key: []}]
      responses: {"200": {description: status, content: {application/json: {schema: {$ref: "#/components/schemas/Status"}}}}, "404": {$ref: "#/components/responses/error"}}
    put:
      summary: Create or replace the deployment.
      security: [{key: []}]
      requestBody: {required: true, content: {application/json: {schema: {$ref: "#/components/schemas/Deployment"}}}}
      responses: {"200": {description: status}, "400": {$ref: "#/components/responses/error"}, "409": {$ref: "#/components/responses/error"}}
    delete: {summary: Remove the deployment., security: [{key: []}], responses: {"204": {description: removed}}}
  /v1/deployments/{model}/canary:
    parameters: [{$ref: "#/components/parameters/model"}]
    post:
      summary: Start a progressive rollout; it advances on live figures and rolls back by itself when a limit is crossed.
      security: [{key: []}]
      requestBody: {required: true, content: {application/json: {schema: {$ref: "#/components/schemas/Canary"}}}}
      responses: {"202": {description: started}, "400": {$ref: "#/components/responses/error"}, "409": {$ref: "#/components/responses/error"}}
  /v1/deployments/{model}/promote:
    parameters: [{$ref: "#/components/parameters/model"}]
    post:
      summary: Give one version all the traffic.
      security: [{key: []}]
      requestBody: {required: true, content: {application/json: {schema: {type: object, required: [version], properties: {version: {type: string}}}}}}
      responses: {"200": {description: status}, "404": {$ref: "#/components/responses/error"}}
  /v1/deployments/{model}/rollback:
    parameters: [{$ref: "#/components/parameters/model"}]
    post:
      summary: Instantly stop a running canary, or go back to the spec before the last change.
      security: [{key: []}]
      responses: {"200": {description: status}, "409": {$ref: "#/components/responses/error"}}
  /v1/deployments/{model}/shadow:
    parameters: [{$ref: "#/components/parameters/model"}]
    put:
      summary: Copy a share of the traffic to a version whose answers are compared, never returned; share 0 alone (or an empty object) turns it off. Not while a canary runs (409).
      security: [{key: []}]
      requestBody: {required: true, content: {application/json: {schema: {type: object, additionalProperties: false, properties: {version: {type: string}, share: {type: number, minimum: 0, maximum: 1}, replicas: {type: array, items: {type: string}}}}}}}
      responses: {"200": {description: status}, "400": {$ref: "#/components/responses/error"}, "409": {$ref: "#/components/responses/error"}}
  /v1/keys:
    get: {summary: Key ids and scopes (never the keys)., security: [{key: []}], responses: {"200": {description: keys}}}
    post:
      summary: Create a key; the answer holds the key itself, shown once.
      security: [{key: []}]
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [id, scopes]
              additionalProperties: false
              properties:
                id: {type: string}
                scopes: {type: array, items: {type: string}}
                rate_per_second: {type: number, exclusiveMinimum: 0, maximum: 1000000, description: "no limit when left out"}
                burst: {type: number, minimum: 1, maximum: 1000000, description: "only with rate_per_second; default one second's worth"}
      responses: {"201": {description: created}, "400": {$ref: "#/components/responses/error"}, "409": {$ref: "#/components/responses/error"}}
  /v1/keys/{id}:
    delete:
      summary: Revoke a key.
      security: [{key: []}]
      parameters: [{name: id, in: path, required: true, schema: {type: string}}]
      responses: {"204": {description: revoked}, "404": {$ref: "#/components/responses/error"}}

"""#
}
