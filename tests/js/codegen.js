// GraphQL Code Generator: TypeScript types for the operations in client/operations from the
// committed schema.graphql (run by tests/integration/test_typescript_client.py, or
// `npm run typecheck --prefix tests/js`). Custom scalars are mapped so no generated type is `any`.
const schema = process.env.KONVO_SCHEMA ?? "../../schema.graphql";

export default {
  overwrite: true,
  schema,
  documents: "client/operations/*.graphql",
  generates: {
    "client/generated/graphql.ts": {
      plugins: ["typescript", "typescript-operations"],
      config: {
        strictScalars: true,
        scalars: { DateTime: "string", JSON: "unknown" },
        enumsAsTypes: true,
        avoidOptionals: true,
        nonOptionalTypename: true,
        useTypeImports: true,
      },
    },
  },
};
