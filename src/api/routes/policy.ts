/** /v1/policy: the policy file (YAML or JSON), and replacing it whole. */
import type { FastifyPluginAsync } from 'fastify';
import type { ShaperService } from '../service.js';
import { policyTextOf } from '../../controller/persist.js';
import { POLICY_BODY_LIMIT } from '../replies.js';
import { ApplyView, ErrorView, PolicyView } from '../schemas.js';

const YAML_TYPES = ['application/yaml', 'application/x-yaml', 'text/yaml'];

export const policyRoutes: FastifyPluginAsync<{ service: ShaperService }> = async (app, { service }) => {
  app.get('/policy', {
    schema: {
      summary: 'The policy file: as JSON, or its YAML text (comments included) with Accept: application/yaml.',
      tags: ['policy'],
      produces: ['application/json', 'application/yaml'],
      response: { 200: PolicyView },
    },
  }, async (request, reply) => {
    const policy = service.policy();
    if (YAML_TYPES.some((t) => (request.headers.accept ?? '').includes(t))) {
      return reply.type('application/yaml; charset=utf-8').header('x-policy-sha256', policy.sha256).send(policy.text);
    }
    const { text: _text, ...view } = policy;
    return view;
  });

  app.put<{ Body: unknown }>('/policy', {
    bodyLimit: POLICY_BODY_LIMIT,
    schema: {
      summary: 'Replace the whole policy, validated exactly as the file is (all or nothing); in force and saved before the response.',
      description: 'YAML (application/yaml) is saved as sent, comments included; JSON is saved as YAML.',
      tags: ['policy'],
      consumes: ['application/yaml', 'application/json'],
      body: { description: 'The policy, as in the file (docs/policy.schema.json).' },
      response: { 200: ApplyView, 400: ErrorView, 401: ErrorView, 409: ErrorView, 413: ErrorView, 415: ErrorView, 500: ErrorView },
    },
  }, async (request) => {
    const text = typeof request.body === 'string' ? request.body : policyTextOf(request.body);
    return service.replacePolicy(text, request.id);
  });
};
