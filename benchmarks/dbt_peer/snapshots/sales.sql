{% snapshot sales %}
{# transactional: a sale absent from a day's file is not deleted (hard_deletes: ignore) #}
{{ config(target_schema='main', unique_key='sale_id', strategy='check', check_cols='all',
          hard_deletes='ignore') }}
select * from read_csv('{{ var("landing") }}/sales_{{ var("day") }}.txt', header = false,
                       delim = '~', quote = '',
                       columns = {'sale_id': 'VARCHAR', 'customer_id': 'VARCHAR',
                                  'product_id': 'VARCHAR', 'quantity': 'VARCHAR',
                                  'price_per_unit': 'VARCHAR', 'total_price': 'VARCHAR',
                                  'sale_date': 'VARCHAR'})
{% endsnapshot %}
